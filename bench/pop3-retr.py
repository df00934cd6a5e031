#!/usr/bin/env python3
"""bench/pop3-retr.py — an independent POP3 retrieval driver (issue 14 item 5).

The same loop as `ringmail-loadgen pop3 --connections 1` (one session at a
time, one RETR at a time, no DELE), written with nothing but blocking
sockets, so that a slow spot in the load generator cannot hide: if this
script retrieves as fast as loadgen from the same server, loadgen is not what
limits the measurement.

    bench/pop3-retr.py HOST:PORT USERS_FILE [--seconds N]

USERS_FILE has `address:password` lines, like loadgen's `--users`. Prints one
JSON line: messages, bytes (message bytes, unstuffed, as loadgen counts
them), sessions, elapsed_s, messages_per_s, reads_per_message, and the
driver's own CPU seconds (user + system).
"""

import json
import os
import socket
import sys
import time


class Pop3:
    def __init__(self, addr):
        host, port = addr.rsplit(':', 1)
        if not host.startswith('127.'):
            sys.exit('pop3-retr: loopback targets only')
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b''
        self.reads = 0

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError('closed by server')
        self.reads += 1
        self.buf += data

    def line(self):
        while b'\r\n' not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def ok(self, cmd=None):
        if cmd is not None:
            self.sock.sendall(cmd + b'\r\n')
        line = self.line()
        if not line.startswith(b'+OK'):
            raise RuntimeError(f'{cmd!r}: {line!r}')
        return line

    def multiline(self):
        """The body of a multi-line reply up to `.CRLF`, dot-unstuffed."""
        while True:
            end = self.buf.find(b'\r\n.\r\n')
            if end >= 0 or self.buf.startswith(b'.\r\n'):
                break
            self._fill()
        if self.buf.startswith(b'.\r\n'):
            body, self.buf = b'', self.buf[3:]
        else:
            body, self.buf = self.buf[:end + 2], self.buf[end + 5:]
        return body.replace(b'\r\n..', b'\r\n.') if b'\r\n..' in body else body


def session(addr, user, password, totals):
    c = Pop3(addr)
    c.ok()
    c.ok(b'USER ' + user.encode())
    c.ok(b'PASS ' + password.encode())
    c.ok(b'LIST')
    numbers = [int(l.split()[0]) for l in c.multiline().split(b'\r\n') if l]
    c.reads = 0
    for n in numbers:
        c.ok(b'RETR %d' % n)
        body = c.multiline()
        body = body[1:] if body.startswith(b'..') else body
        totals['messages'] += 1
        totals['bytes'] += len(body)
    totals['reads'] += c.reads
    c.ok(b'QUIT')
    c.sock.close()
    totals['sessions'] += 1


def main():
    args = sys.argv[1:]
    seconds = None
    if '--seconds' in args:
        i = args.index('--seconds')
        seconds = float(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    addr, users_file = args
    users = [l.strip().split(':', 1) for l in open(users_file)
             if l.strip() and not l.startswith('#')]
    totals = {'messages': 0, 'bytes': 0, 'sessions': 0, 'reads': 0}
    cpu0, t0 = os.times(), time.monotonic()
    while True:
        for user, password in users:
            session(addr, user, password, totals)
        if seconds is None or time.monotonic() - t0 >= seconds:
            break
    elapsed = time.monotonic() - t0
    cpu1 = os.times()
    totals.update(
        elapsed_s=elapsed,
        messages_per_s=totals['messages'] / elapsed,
        reads_per_message=totals['reads'] / max(totals['messages'], 1),
        driver_cpu_s=(cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
    )
    print(json.dumps(totals))


if __name__ == '__main__':
    main()
