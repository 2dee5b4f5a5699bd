//! Every API test, in one binary, through the public HTTP API of a server
//! bound to port 0 with its own temporary SQLite file.

mod badges;
mod callbacks;
mod channels;
mod cli;
mod client_credentials;
mod coalescing;
mod console;
mod crash;
mod deploy;
mod devices;
mod errors;
mod helpers;
mod liveactivity;
mod openapi;
mod ops;
mod postgres;
mod private;
mod pushes;
mod reload;
mod routing;
mod tls;
mod traces;
mod webpush;
