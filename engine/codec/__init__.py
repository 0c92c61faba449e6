"""Stage 1 of the pipeline: captures <-> flows <-> bit matrices.

* :mod:`.layout`     -- the one declarative table of bit columns everything reads.
* :mod:`.capture`    -- streaming pcap/pcapng reader and atomic writers.
* :mod:`.packets`    -- vectorised IPv4/TCP/UDP/ICMP header parsing.
* :mod:`.flows`      -- bidirectional flow assembly.
* :mod:`.pipeline`   -- capture -> flow matrices (``encode_capture``).
* :mod:`.matrix`     -- matrix -> packets -> pcap (``write_pcap``), row helpers.
* :mod:`.image`      -- matrix <-> PNG in the paper's colours.
* :mod:`.nprint_csv` -- matrix <-> nprint CSV.
"""
