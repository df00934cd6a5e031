#!/usr/bin/env bash
# Run the whole ringmail test suite on a fresh Debian machine: install the
# real peers the tests talk to (Python, curl, swaks, Postfix's smtp-sink and
# smtp-source, fail2ban's fail2ban-regex, dkimpy and opendkim-tools for DKIM,
# SPF, DMARC and ARC), then `cargo test` every package in the workspace.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
command -v swaks >/dev/null || missing+=(swaks)
# swaks only recommends its TLS modules; the STARTTLS tests need them.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/sbin/smtp-sink ] || missing+=(postfix)
command -v fail2ban-regex >/dev/null || missing+=(fail2ban)
# dkimpy (python3-dkim) verifies and signs; PyNaCl for its Ed25519, authres
# for its ARC sealing. Debian's /usr/bin/python3, whatever python3 is first
# on PATH. opendkim-testmsg verifies RSA signatures; unshare and mount
# (util-linux) give it a private resolv.conf.
/usr/bin/python3 -c 'import dkim, nacl, authres' 2>/dev/null || missing+=(python3-dkim python3-nacl python3-authres)
command -v opendkim-testmsg >/dev/null || missing+=(opendkim-tools)
command -v unshare >/dev/null || missing+=(util-linux)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "tests/run.sh: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "tests/run.sh: installing ${missing[*]}" >&2
    # Postfix is only needed for its smtp-sink/smtp-source tools and the
    # benchmark; keep its installer from configuring a system mailer.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exec cargo test --workspace --locked --no-fail-fast "$@"
