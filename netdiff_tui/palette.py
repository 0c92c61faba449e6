"""Command palette provider: open a tab, new recipe from a preset, follow a job, open a report."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

TABS = (("models", "Models", "local checkpoints"), ("recipes", "Recipes", "presets and user recipes"),
        ("jobs", "Jobs", "follow training runs and generations"), ("reports", "Reports", "compliance and evaluation reports"),
        ("generate", "Generate", "generate a labeled dataset"))


class NetdiffCommands(Provider):
    """The console's actions, by name."""

    def _commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        cmds: list[tuple[str, object, str]] = [
            (f"Open {title}", partial(app.action_show_tab, tab), help_) for tab, title, help_ in TABS]
        cmds += [
            ("New recipe from preset", partial(app.action_new_recipe, None), "copy a preset into your recipes"),
            ("Refresh lists", app.action_refresh, "rescan checkpoints, jobs and recipes"),
            ("Start generation", app.action_start_generation, "run the Generate form"),
            ("Cancel generation", app.action_cancel_generation, "stop the running generation"),
        ]
        from engine.datasets import recipes as rp
        cmds += [(f"New recipe from preset: {n}", partial(app.action_new_recipe, n), "copy this preset")
                 for n in rp.preset_names()]
        for j in getattr(app, "jobs", []):
            cmds.append((f"Follow job: {j.name}", partial(app.follow, j.path), f"{j.kind}: {j.path}"))
            for rep in ("compliance.json", "report.json"):
                if (j.path.parent / rep).is_file():
                    cmds.append((f"Open report: {j.name}/{rep}", partial(app.open_report, j.path.parent / rep),
                                 str(j.path.parent / rep)))
        return cmds

    async def discover(self) -> Hits:
        for name, cb, help_ in self._commands():
            if not name.startswith(("New recipe from preset:", "Open report:")):
                yield DiscoveryHit(name, cb, help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, cb, help_ in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), cb, help=help_)
