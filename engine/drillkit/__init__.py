"""Throwaway servers on loopback for the drill and the tests.

- `pki.make_pki(dir)`: a test CA, a server certificate for 127.0.0.1/localhost, a client
  certificate, and a second ("wrong") CA with its own client certificate.
- `https.HttpsServer`: a threaded HTTPS "production" that demands a client certificate
  signed by the test CA; `stop()` and `start()` again on the same port simulate an outage.
- `smtp.SmtpSink`: an aiosmtpd relay that keeps every message in memory.
- `named.DnsLab`: a BIND primary and secondary with a TSIG update key (the DNS steps').

Everything listens on 127.0.0.1 only and writes only inside the directory it is given.
Nothing here is imported by the engine's normal commands.
"""
