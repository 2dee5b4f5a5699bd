//! IMKIT's documented examples, for the demo and the tests.

use serde_json::{Value, json};

/// IMKIT's PUSH_GENERIC (v2) example callback (its `_id`, room and
/// recipients replaced by `id`, `room` and `recipients`).
pub fn generic_callback(id: &str, room: &str, recipients: &[&str]) -> Value {
    json!({
        "_id": id, "message": "lala", "room": room, "roomName": "Demo Room",
        "sender": { "_id": "sss", "avatarUrl": "http://loremflickr.com/240/240/style?1574241882", "nickname": "SSS",
                    "description": "description la la #1568192464957", "isRobot": false, "id": "sss",
                    "lastLoginTimeMS": 1568192470942u64 },
        "messageType": "text", "appID": "SampleApp", "id": id,
        "messageTimeMS": 1574246991222u64, "updatedAtMS": 1574246991223u64, "createdAtMS": 1574246991223u64,
        "pushToClients": recipients
    })
}
