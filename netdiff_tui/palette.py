"""Command palette provider: every tab, every action of the console, presets, jobs and their reports."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from textual.command import DiscoveryHit, Hit, Hits, Provider

TABS = (("models", "Models", "checkpoints: the default, runs, the Hub cache"),
        ("recipes", "Recipes", "presets and user recipes"),
        ("jobs", "Jobs", "running and finished jobs, followed live"),
        ("reports", "Reports", "compliance and evaluation reports"),
        ("export", "Export", "export datasets as one labeled dataset"),
        ("generate", "Generate", "generate a labeled dataset (runs as a job)"))

MODEL_ACTIONS = (("download", "Models: download from the Hub", "repo id, revision; the size is shown before anything is fetched"),
                 ("verify", "Models: verify the selected checkpoint", "every file's hash against the Hub's"),
                 ("delete", "Models: delete the selected Hub revision", "the plan and the bytes freed first"),
                 ("finetune", "Models: fine-tune the selected checkpoint", "a detached train --init-from job"))

JOB_ACTIONS = (("cancel", "Cancel the followed job", "SIGTERM: it keeps the work it finished"),
               ("resume", "Resume the followed job", "run its command again with --resume"),
               ("report", "Open the followed job's report", "its compliance.json or report.json"),
               ("flows", "Flow viewer of the followed job", "its dataset's flows as bit images and packets"),
               ("export", "Export the followed job's dataset", "the Export tab with its output chosen"))


class NetdiffCommands(Provider):
    """The console's actions, by name."""

    def _commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        cmds: list[tuple[str, object, str]] = [
            (f"Open {title}", partial(app.action_show_tab, tab), help_) for tab, title, help_ in TABS]
        cmds += [
            ("Help: keys", app.action_help, "every key binding by id (remap them in settings.toml)"),
            ("New recipe from preset", partial(app.action_new_recipe, None), "copy a preset into your recipes"),
            ("Refresh lists", app.action_refresh, "rescan checkpoints, jobs, datasets and recipes"),
            ("Start generation", app.action_start_generation, "start the Generate form's job"),
            ("Start export", app.action_start_export, "start the Export form's job"),
        ]
        cmds += [(name, partial(app.action_job, what), help_) for what, name, help_ in JOB_ACTIONS]
        cmds += [(name, partial(self._models_action, what), help_) for what, name, help_ in MODEL_ACTIONS]
        from engine.datasets import recipes as rp
        cmds += [(f"New recipe from preset: {n}", partial(app.action_new_recipe, n), "copy this preset")
                 for n in rp.preset_names()]
        for j in getattr(app, "jobs", []):
            cmds.append((f"Follow job: {j.name}", partial(app.follow, j.path), f"{j.kind}: {j.path.parent}"))
            out = j.record.out if j.record is not None and j.record.out else None
            for base in filter(None, (j.path.parent, out)):
                for rep in ("compliance.json", "report.json"):
                    if (Path(base) / rep).is_file():
                        cmds.append((f"Open report: {j.name}/{rep}", partial(app.open_report, Path(base) / rep),
                                     str(Path(base) / rep)))
        return cmds

    def _models_action(self, what: str) -> None:
        """Show the Models tab, then run the pane's own action (its dialogs act on the selected row)."""
        from .screens.models import ModelsPane
        self.app.action_show_tab("models")
        getattr(self.app.query_one(ModelsPane), f"action_{what}")()

    async def discover(self) -> Hits:
        for name, cb, help_ in self._commands():
            if not name.startswith(("New recipe from preset:", "Open report:", "Follow job:")):
                yield DiscoveryHit(name, cb, help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, cb, help_ in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), cb, help=help_)
