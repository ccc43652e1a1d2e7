// Loaded into each chaos member with NODE_OPTIONS=--import=<this file>. It changes one thing: an
// outbound TCP connection to a 127.x address leaves from the member's own peer address (the host of
// --listen-peer-url) instead of 127.0.0.1, which the kernel would otherwise pick for every member.
// Then a packet's source names the member that sent it, and the partition nemesis can cut
// "n1 -> n2" with an iptables rule on addresses. Nothing else in the member is touched.
import net from 'node:net';

const flag = process.argv.indexOf('--listen-peer-url');
const self = flag >= 0 ? safeHost(process.argv[flag + 1]) : null;

function safeHost(url) {
  try {
    return new URL(url).hostname;
  } catch {
    return null;
  }
}

if (self !== null && /^127\.\d+\.\d+\.\d+$/.test(self)) {
  const connect = net.connect;
  const bound = function (...args) {
    const [options] = args;
    if (options !== null && typeof options === 'object' && options.localAddress == null &&
      typeof options.host === 'string' && /^127\.\d+\.\d+\.\d+$/.test(options.host)) {
      args[0] = { ...options, localAddress: self };
    }
    return connect.apply(this, args);
  };
  net.connect = bound;
  net.createConnection = bound;
}
