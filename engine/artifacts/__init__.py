"""Typed readers for everything the engine writes, and where it lies on disk.

The console and the command line read engine output only through these; each reader checks the
type and range of every field it takes (the files may be truncated, edited or hostile) and
raises :class:`engine.errors.InputError` with one line naming the file and the field. Listings
(:func:`find_models`, :func:`find_jobs`) never raise for one bad entry: its problem becomes the
entry's status line.

=====================  ===============================  ==================================
what                   file(s)                          reader
=====================  ===============================  ==================================
checkpoint             config.json, model.safetensors   :func:`read_checkpoint`
models and runs        (discovery)                      :func:`find_models`, :func:`find_runs`
job                    job.json, events.jsonl, log.txt  :func:`read_job`, :func:`find_jobs`, :func:`log_tail`
compliance report      compliance.json                  :func:`read_compliance`
evaluation summary     report.json                      :func:`read_evaluation`
either report          (a file or a directory)          :func:`read_report`
generation             generate.json                    :func:`read_generate`
export                 manifest.json                    :func:`read_export_manifest`
any manifest           manifest.csv                     :func:`read_manifest_rows`
=====================  ===============================  ==================================

Events in ``events.jsonl`` are read by :meth:`engine.progress.EventLog.follow`.
"""

from engine.artifacts.datasets import (ExportManifest, GenerateRecord, read_export_manifest, read_generate,
                                       read_manifest_rows, request_hash)
from engine.artifacts.fields import Fields, read_json_object
from engine.artifacts.jobs import (JobEntry, effective_status, events_path, find_jobs, job_alive, log_tail, read_job,
                                   resolve_job)
from engine.artifacts.models import (DEFAULT_MODEL_DIR, WEIGHTS, Checkpoint, ModelEntry, find_models, find_runs,
                                     read_checkpoint)
from engine.artifacts.reports import (ComplianceReport, Counts, EvaluationSummary, RuleResult, compliance_line,
                                      find_report, read_compliance, read_evaluation, read_report)

__all__ = ["DEFAULT_MODEL_DIR", "WEIGHTS", "Checkpoint", "ComplianceReport", "Counts", "EvaluationSummary",
           "ExportManifest", "Fields", "GenerateRecord", "JobEntry", "ModelEntry", "RuleResult", "compliance_line",
           "effective_status", "events_path", "find_jobs", "find_models", "find_report", "find_runs", "job_alive",
           "log_tail", "read_checkpoint", "read_compliance", "read_evaluation", "read_export_manifest", "read_generate", "read_job",
           "read_json_object", "read_manifest_rows", "read_report", "request_hash", "resolve_job"]
