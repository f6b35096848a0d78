#!/usr/bin/env python3
"""Writes a zone file of example.net. with N records (BENCHMARKS.md §12).

Usage: gen.py N OUT [bad]

SOA, two NS and their A records, then a mix cycling through A, AAAA (TTL 300), MX, TXT,
CNAME and SRV, one owner each. With `bad`, one more line with trailing data at the very end
(`last IN A 192.0.2.1 extra`): the error a checker must find after reading everything.
"""
import sys

n, out, bad = int(sys.argv[1]), sys.argv[2], len(sys.argv) > 3
with open(out, "w") as f:
    f.write("$ORIGIN example.net.\n$TTL 3600\n"
            "@ IN SOA ns1 hostmaster 2026120201 7200 3600 1209600 300\n"
            "@ IN NS ns1\n@ IN NS ns2\nns1 IN A 192.0.2.53\nns2 IN A 198.51.100.53\n")
    for i in range(n - 5):
        h, k = f"h{i}", i % 6
        if k == 0:
            f.write(f"{h} IN A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
        elif k == 1:
            f.write(f"{h} 300 IN AAAA 2001:db8::{i & 0xffff:x}:{(i >> 16) & 0xffff:x}\n")
        elif k == 2:
            f.write(f"{h} IN MX 10 mail{i}.example.net.\n")
        elif k == 3:
            f.write(f"{h} IN TXT \"v=spf1 include:_spf{i}.example.net -all\"\n")
        elif k == 4:
            f.write(f"{h} IN CNAME h{i - 1}\n")
        else:
            f.write(f"_sip._udp.{h} IN SRV 10 60 5060 sip{i}.example.net.\n")
    if bad:
        f.write("last IN A 192.0.2.1 extra\n")
