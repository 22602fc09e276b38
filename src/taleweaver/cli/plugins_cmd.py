"""`taleweaver plugins`: the installed plugins, and the commands they add."""

from __future__ import annotations

import click

from taleweaver.plugins import Plugins, load_plugins


def loaded(ctx: click.Context) -> Plugins:
    """The installed plugins, loaded once per invocation; the CLI lists a failing
    plugin rather than stop, required or not."""
    meta = ctx.find_root().meta
    if "taleweaver.plugins" not in meta:
        meta["taleweaver.plugins"] = load_plugins()
    plugins: Plugins = meta["taleweaver.plugins"]
    return plugins


class _PluginCommands(click.Group):
    """`list` and, after it, every command a loaded plugin adds (`cli_commands`)."""

    def _added(self, ctx: click.Context) -> dict[str, click.Command]:
        added: dict[str, click.Command] = {}
        for _, commands in loaded(ctx).each("cli_commands"):
            for command in commands:
                if command.name and command.name not in self.commands:
                    added.setdefault(command.name, command)
        return added

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._added(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._added(ctx).get(cmd_name)


@click.group(cls=_PluginCommands)
def plugins() -> None:
    """Installed plugins (name, version, hooks, status) and the commands they add."""


@plugins.command("list")
@click.pass_context
def list_cmd(ctx: click.Context) -> None:
    """Name, version, hooks and status of every installed plugin."""
    found = loaded(ctx)
    if not found.infos:
        click.echo("no plugins installed (entry-point group taleweaver.plugins)")
        return
    for info in found.infos:
        hooks = ", ".join(info.hooks) or "-"
        line = f"{info.name}  {info.version or '?'}  {info.status}  hooks: {hooks}"
        click.echo(line + (f"  error: {info.error}" if info.error else ""))
