"""Export a labeled dataset of per-flow captures from generated and real data.

Inputs (any mix, in the order given):

- generated dataset directories (``netdiff generate``): ``manifest.csv`` +
  ``<label>/*.pcap``, one flow per file -> **synthetic** flows, copied byte for byte;
- real labeled capture directories: ``<class>/*.pcap|pcapng`` (or a folder of
  captures named after its class) -> **real** flows, cut into flows with the
  same flow rules as ``netdiff encode`` (:class:`engine.codec.flows.FlowAssembler`)
  and written with their original bytes (link layer, payload, timestamps);
- directories written by a previous export (their manifest says ``origin``).

Output directory (appears complete or not at all)::

    OUT/<class>/<flow_id>.pcap          one capture per flow
    OUT/<class>.pcapng                  --pcapng: the class's flows in one file, each
                                        packet's comment "label=<class> flow=<id> origin=..."
    OUT/train/<class>/..., OUT/test/... with --split (by flow, stratified by class)
    OUT/manifest.csv, OUT/manifest.json one row per flow
    OUT/README.md                       data card

It is built in ``.OUT.export/data`` next to OUT, with a progress journal in
``.OUT.export/journal.jsonl``; the last step renames ``data`` to OUT. An
interrupted export leaves only that hidden work directory; running the same
command again continues it without redoing finished flows, and the result is
byte for byte what an uninterrupted run writes.

Modules: :mod:`.scan` (inputs -> sources), :mod:`.flows` (a source -> flow files and rows),
:mod:`.writers` (pcap/pcapng bytes), :mod:`.split` (train/test), :mod:`.journal` (resume state),
:mod:`.manifest` (manifest.csv/json), :mod:`.card` (README.md), :mod:`.run` (:func:`export`).
"""

from engine.datasets.export.card import data_card
from engine.datasets.export.flows import PROTO_NAMES, CutFlow, cut_flows, flows_of, free_name
from engine.datasets.export.journal import Journal, fingerprint
from engine.datasets.export.manifest import MANIFEST_COLUMNS
from engine.datasets.export.options import EXPORT_VERSION, ExportOptions
from engine.datasets.export.run import export, work_dir_for
from engine.datasets.export.scan import Source, scan_inputs
from engine.datasets.export.split import assign_split, n_test, real_test_flows
from engine.datasets.export.writers import (PcapngWriter, Record, flow_file_bytes, iter_records, pcap_file,
                                            pcapng_file)

__all__ = ["EXPORT_VERSION", "MANIFEST_COLUMNS", "PROTO_NAMES", "CutFlow", "ExportOptions",
           "Journal", "PcapngWriter", "Record", "Source", "assign_split", "cut_flows",
           "data_card", "export", "fingerprint", "flow_file_bytes", "flows_of", "free_name", "iter_records",
           "n_test", "pcap_file", "pcapng_file", "real_test_flows", "scan_inputs", "work_dir_for"]
