"""Numbers and names the whole engine agrees on, declared once.

Bit positions are not here: the layout table (:mod:`engine.codec.layout`) is their one source,
including the direction column (``layout.COL_DIR``).
"""

from __future__ import annotations

# IP protocol numbers of the transports the layout encodes.
TCP, UDP, ICMP = 6, 17, 1
PROTO_NUM = {"tcp": TCP, "udp": UDP, "icmp": ICMP}
PROTO_NAME = {num: name for name, num in PROTO_NUM.items()}

# The paper's flow length and the model's: a flow is cut there when a capture is read, an image
# is this many rows high, and a recipe cannot ask for more packets per flow.
MAX_FLOW_PACKETS = 1024

# File names taken as captures when a directory is scanned (a given file is read whatever its
# name: the reader goes by the magic number). ``.dmp`` is what tcpdump users on Windows write.
CAPTURE_EXTS = (".pcap", ".pcapng", ".cap", ".dmp")
# Flow files written by ``netdiff encode`` (npz, png, nprint csv).
FLOW_EXTS = (".npz", ".png", ".csv")
# Never an input, though its extension is a flow file's.
MANIFEST = "manifest.csv"
