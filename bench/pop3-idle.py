#!/usr/bin/env python3
"""bench/pop3-idle.py — memory per idle logged-in POP3 session (issue 14).

Opens SESSIONS sessions to a POP3 server, one user each (a POP3 login locks
its maildrop, so sessions need users of their own), logs each in (USER,
PASS, STAT: the server has read the mailbox), and leaves them idle. The
server's memory is read at 0, SESSIONS/2 and SESSIONS sessions, as the sum
over its whole process tree (Dovecot runs a process per session) of Pss and
Pss_Anon from /proc/PID/smaps_rollup (proportional: pages shared between
processes are split among them, so a forked session process is charged its
own pages and its share of the rest). Per session is the slope between the
half and the full count, which leaves out one-time costs (the first
allocations, caches that fill once).

    bench/pop3-idle.py HOST:PORT USERS_FILE SERVER_PID --sessions N [--settle S]

USERS_FILE has `address:password` lines; the first N are used. Client
sockets are spread over source addresses 127.0.1.1, 127.0.1.2, … (50 per
address), so per-IP connection limits do not stop the run. Prints one JSON
line: sessions, the readings (kB), per_session_pss_bytes,
per_session_anon_bytes, processes (at each reading), login errors.
"""

import json
import os
import socket
import sys
import time

PER_SOURCE = 50


def tree(pid):
    """pid and every live descendant."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory(pid):
    """(Pss kB, Pss_Anon kB, processes) summed over pid's tree."""
    pss = anon = n = 0
    for p in tree(pid):
        try:
            with open(f'/proc/{p}/smaps_rollup') as f:
                for line in f:
                    key, _, rest = line.partition(':')
                    if key == 'Pss':
                        pss += int(rest.split()[0])
                    elif key == 'Pss_Anon':
                        anon += int(rest.split()[0])
            n += 1
        except OSError:
            pass  # exited meanwhile
    return pss, anon, n


class Session:
    def __init__(self, host, port, source):
        self.sock = socket.create_connection((host, port), timeout=60, source_address=(source, 0))
        self.buf = b''

    def line(self):
        while b'\r\n' not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError('closed by server')
            self.buf += data
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line.decode('latin-1')

    def ask(self, cmd):
        self.sock.sendall(cmd.encode() + b'\r\n')
        reply = self.line()
        if not reply.startswith('+OK'):
            raise RuntimeError(f'{cmd.split()[0]}: {reply}')
        return reply


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        sys.exit(__doc__)
    addr, users_file, pid = args[0], args[1], int(args[2])
    sessions = int(args[args.index('--sessions') + 1]) if '--sessions' in args else 500
    settle = float(args[args.index('--settle') + 1]) if '--settle' in args else 2.0
    host, port = addr.rsplit(':', 1)
    if not host.startswith('127.'):
        sys.exit('pop3-idle: loopback targets only')
    users = [l.rstrip('\n').split(':', 1) for l in open(users_file) if ':' in l][:sessions]
    if len(users) < sessions:
        sys.exit(f'pop3-idle: {users_file} has {len(users)} users, {sessions} wanted')
    half = sessions // 2
    readings, open_sessions, errors = [], [], []

    def read():
        time.sleep(settle)
        readings.append(memory(pid))

    read()
    for i, (user, password) in enumerate(users):
        source = f'127.0.1.{1 + i // PER_SOURCE}'
        try:
            s = Session(host, int(port), source)
            if not s.line().startswith('+OK'):
                raise RuntimeError('no greeting')
            s.ask(f'USER {user}')
            s.ask(f'PASS {password}')
            s.ask('STAT')
            open_sessions.append(s)
        except (OSError, RuntimeError) as e:
            errors.append(f'{user}: {e}')
        if i + 1 == half:
            read()
    read()
    for s in open_sessions:
        try:
            s.sock.sendall(b'QUIT\r\n')
            s.sock.close()
        except OSError:
            pass
    (_, _, _), (pss_half, anon_half, _), (pss_full, anon_full, _) = readings
    step = len(open_sessions) - half
    print(json.dumps({
        'sessions': len(open_sessions),
        'pss_kb': [r[0] for r in readings],
        'pss_anon_kb': [r[1] for r in readings],
        'processes': [r[2] for r in readings],
        'per_session_pss_bytes': round((pss_full - pss_half) * 1024 / step) if step > 0 else None,
        'per_session_anon_bytes': round((anon_full - anon_half) * 1024 / step) if step > 0 else None,
        'errors': errors[:5],
        'error_count': len(errors),
    }))


if __name__ == '__main__':
    main()
