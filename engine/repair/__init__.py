"""Protocol-compliance repair and the compliance report.

A diffusion model's output is noisy bits; this package turns any flow matrix
-- even uniform noise -- into packets real tools accept, and says exactly what
it changed. Each rule (see :data:`RULES`, in pipeline order, and docs/repair.md)
counts its violations and fixes them with numpy over a whole batch of flows.

>>> mats, metas, report = repair_flows(mats, metas, RepairOptions(server_port=443))
>>> report.write("out/")          # compliance.json + compliance.txt
>>> check_flows(mats, metas).clean
True
"""

from .batch import Batch
from .pipeline import RULE_NAMES, RULES, RepairOptions, check_flows, make_batch, repair_flows, rule_table
from .report import ComplianceReport, RuleReport, merge_reports

__all__ = ["RULES", "RULE_NAMES", "RepairOptions", "repair_flows", "check_flows", "rule_table",
           "ComplianceReport", "RuleReport", "Batch", "make_batch", "merge_reports"]
