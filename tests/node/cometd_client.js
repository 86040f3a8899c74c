// A CometD client (the CometD project's own JavaScript client on Node.js): it handshakes with the URL given,
// subscribes to the channels given, prints "ready" once subscribed and then every message as one JSON line,
// and exits after COUNT messages or SECONDS seconds.
// usage: node cometd_client.js URL TOKEN COUNT SECONDS CHANNEL...
require('cometd-nodejs-client').adapt();
const lib = require('cometd');

const [url, token, count, seconds, ...channels] = process.argv.slice(2);
const cometd = new lib.CometD();
cometd.configure({url: url, requestHeaders: {Authorization: 'Bearer ' + token}, logLevel: 'warn'});
let received = 0;
let subscribed = 0;
const done = (code) => cometd.disconnect(() => process.exit(code));
setTimeout(() => { console.log('timeout'); process.exit(2); }, Number(seconds) * 1000);
cometd.handshake((reply) => {
  if (!reply.successful) { console.log('handshake failed ' + JSON.stringify(reply)); process.exit(3); }
  for (const channel of channels) {
    cometd.subscribe(channel, (message) => {
      console.log(JSON.stringify({channel: message.channel, data: message.data}));
      received += 1;
      if (received >= Number(count)) done(0);
    }, (subscribeReply) => {
      subscribed += 1;
      if (subscribed === channels.length) console.log('ready');
    });
  }
});
