// The Node side of pushgate's cross-checks against independent libraries:
// one JSON object in on stdin, one out on stdout. Verbs:
//   encrypt {p256dh, auth, payload}                 -> {body}     (web-push's aes128gcm, base64)
//   decrypt {privateKey, publicKey, auth, body}      -> {payload}  (http_ece, as web-push's peers decrypt)
//   send {subscription, payload, vapid, options}    -> {statusCode} (web-push's sendNotification)
//   apn {fields}                                    -> {headers, payload} (@parse/node-apn's Notification
//                                                      with those fields set, as it would send it)
//   fcm {message}                                   -> {message}  (firebase-admin's message as its send()
//                                                      checks and renames it for the FCM v1 API)
'use strict';

const ece = require('http_ece');
const crypto = require('crypto');
const webpush = require('web-push');
const apn = require('@parse/node-apn');
const path = require('path');
// Not among the package's exports: the checks and renames send() applies, run without a network.
const {validateMessage} = require(path.join(__dirname, 'node_modules/firebase-admin/lib/messaging/messaging-internal.js'));

async function main(verb, input) {
  switch (verb) {
    case 'encrypt': {
      const {cipherText} = webpush.encrypt(input.p256dh, input.auth, input.payload, 'aes128gcm');
      return {body: cipherText.toString('base64')};
    }
    case 'decrypt': {
      const privateKey = crypto.createECDH('prime256v1');
      privateKey.setPrivateKey(Buffer.from(input.privateKey, 'base64url'));
      const plaintext = ece.decrypt(Buffer.from(input.body, 'base64'), {
        version: 'aes128gcm',
        privateKey,
        authSecret: input.auth,
      });
      return {payload: plaintext.toString('utf8')};
    }
    case 'send': {
      const {subject, publicKey, privateKey} = input.vapid;
      const options = Object.assign({vapidDetails: {subject, publicKey, privateKey}}, input.options || {});
      const result = await webpush.sendNotification(input.subscription, input.payload, options);
      return {statusCode: result.statusCode};
    }
    case 'apn': {
      const notification = new apn.Notification();
      for (const [field, value] of Object.entries(input.fields)) {
        notification[field] = value;
      }
      return {headers: notification.headers(), payload: JSON.parse(notification.compile())};
    }
    case 'fcm': {
      const message = JSON.parse(JSON.stringify(input.message));
      validateMessage(message);
      return {message};
    }
    default:
      throw new Error('unknown verb ' + verb);
  }
}

let text = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', chunk => { text += chunk; });
process.stdin.on('end', () => {
  main(process.argv[2], JSON.parse(text))
    .then(output => process.stdout.write(JSON.stringify(output)))
    .catch(error => {
      process.stderr.write(String(error && error.stack || error) + '\n');
      process.exit(1);
    });
});
