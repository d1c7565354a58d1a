"""Test shim around Debian's exabgp 4.2 for internal/testpeer.

exabgp 4.2 can only send what its encoder builds. Tests of RFC 7606 error
handling need messages no correct encoder produces (bad attribute lengths,
truncated NLRI, broken framing), so this shim adds one API command before
handing control to exabgp's own main():

    neighbor <peer-ip> send-raw <hex>

<hex> is a whole BGP message (marker, length, type, body). It is written to
the established session's socket as it is; exabgp neither checks nor counts
it. The command answers "done" once the bytes are written, "error" when no
established session matches.

The same file also runs as the API process ("relay" mode): it copies the
commands the Go test writes into a FIFO to exabgp, and exabgp's answers and
events into a file the Go test reads. It exits when exabgp closes its stdin,
so it never outlives exabgp, even when exabgp is killed.
"""

import binascii
import os
import select
import sys


def relay(fifo_path, out_path):
    # Opening the FIFO read-write never blocks and never sees end-of-file
    # between two writers, so select() does not spin.
    fifo = os.open(fifo_path, os.O_RDWR)
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    while True:
        readable, _, _ = select.select([stdin, fifo], [], [])
        if stdin in readable:
            data = os.read(stdin, 65536)
            if not data:
                return 0
            os.write(out, data)
        if fifo in readable:
            data = os.read(fifo, 65536)
            while data:
                written = os.write(stdout, data)
                data = data[written:]


def register_send_raw():
    from exabgp.reactor.api.command.command import Command
    from exabgp.reactor.api.command.limit import extract_neighbors
    from exabgp.reactor.api.command.limit import match_neighbors

    @Command.register('text', 'send-raw')
    def send_raw(self, reactor, service, line):
        descriptions, command = extract_neighbors(line)
        parts = command.split()
        try:
            if len(parts) != 2 or parts[0] != 'send-raw':
                raise ValueError('expected: neighbor <ip> send-raw <hex>')
            raw = binascii.unhexlify(parts[1])
        except (ValueError, binascii.Error) as exc:
            self.log_failure('send-raw: %s' % exc)
            reactor.processes.answer_error(service)
            return False
        peers = match_neighbors(reactor.established_peers(), descriptions)
        if not peers:
            self.log_failure('send-raw: no established neighbor matches %s' % line)
            reactor.processes.answer_error(service)
            return False

        def write():
            try:
                for key in peers:
                    proto = reactor._peers[key].proto
                    if proto is None or proto.connection is None:
                        raise ValueError('session %s went down' % key)
                    # writer() yields False while the socket would block and
                    # True once every byte is out; the reactor resumes this
                    # generator in between.
                    for done in proto.connection.writer(raw):
                        if done:
                            break
                        yield False
            except Exception as exc:  # the reactor would only log it: answer
                self.log_failure('send-raw: %s' % exc)
                reactor.processes.answer_error(service)
                return
            reactor.processes.answer_done(service)

        reactor.asynchronous.schedule(service, line, write())
        return True


def main():
    if len(sys.argv) == 4 and sys.argv[1] == 'relay':
        return relay(sys.argv[2], sys.argv[3])
    register_send_raw()
    from exabgp.application.bgp import main as exabgp_main

    sys.argv = ['exabgp'] + sys.argv[1:]
    return exabgp_main()


if __name__ == '__main__':
    sys.exit(main())
