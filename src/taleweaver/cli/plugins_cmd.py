"""`taleweaver plugins`: the installed plugins, turning one off or on in a workspace,
the formats they offer, and the commands they add. The built-in commands come
through the `cli_commands` hook, as a plugin's do (and before them)."""

from __future__ import annotations

import click

from taleweaver.cli.options import WORKSPACE
from taleweaver.plugins import PROCESS_WIDE, BuiltIn, Plugins, load_plugins


def loaded(ctx: click.Context) -> Plugins:
    """The installed plugins, loaded once per invocation; the CLI lists a failing
    plugin rather than stop, required or not."""
    meta = ctx.find_root().meta
    if "taleweaver.plugins" not in meta:
        found = load_plugins()
        found.add_builtin("cli", BuiltIn(commands=BUILT_IN))
        meta["taleweaver.plugins"] = found
    plugins: Plugins = meta["taleweaver.plugins"]
    return plugins


class _PluginCommands(click.Group):
    """Every command the `cli_commands` hook returns: the built-in ones, then those
    loaded plugins add (a plugin cannot take a name already taken)."""

    def _added(self, ctx: click.Context) -> dict[str, click.Command]:
        added: dict[str, click.Command] = {}
        for _, commands in loaded(ctx).each("cli_commands"):
            for command in commands:
                if command.name:
                    added.setdefault(command.name, command)
        return added

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._added(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._added(ctx).get(cmd_name)


@click.group(cls=_PluginCommands)
def plugins() -> None:
    """Installed plugins (name, version, hooks, status) and the commands they add."""


@click.command("list")
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


def _toggle(name: str, workspace: str, enabled: bool) -> None:
    from taleweaver.cli.admin import _engine
    from taleweaver.cli.main import _run, _settings

    async def run() -> None:
        async with _engine(_settings()) as engine:
            await engine.flags.set(workspace, f"plugin:{name}", enabled, actor="cli")

    _run(run())
    wide = ", ".join(sorted(PROCESS_WIDE))
    click.echo(
        f"plugin {name} {'on' if enabled else 'off'} in workspace {workspace} "
        f"(its {wide} serve every workspace whatever this says)"
    )


@click.command("disable")
@click.argument("name")
@WORKSPACE
def disable_cmd(name: str, workspace: str) -> None:
    """Turn plugin NAME off in a workspace: its kinds, sources, detectors, listeners
    and formats stop serving it (the flag plugin:NAME)."""
    _toggle(name, workspace, False)


@click.command("enable")
@click.argument("name")
@WORKSPACE
def enable_cmd(name: str, workspace: str) -> None:
    """Turn plugin NAME on again in a workspace (plugins are on by default)."""
    _toggle(name, workspace, True)


@click.command("formats")
def formats_cmd() -> None:
    """Every session export and import format, built in or added by a plugin."""
    from taleweaver.cli.admin import _engine
    from taleweaver.cli.main import _run, _settings

    async def run() -> dict[str, list[dict[str, object]]]:
        async with _engine(_settings()) as engine:
            described: dict[str, list[dict[str, object]]] = engine.formats.describe()
            return described

    described = _run(run())
    for direction in ("export", "import"):
        for fmt in described[direction]:
            found = fmt.get("aliases")
            aliases = ", ".join(str(a) for a in found) if isinstance(found, list) else ""
            also = f" ({aliases})" if aliases else ""
            click.echo(
                f"{direction}  {fmt['name']}{also}  from {fmt['plugin']}  {fmt['description']}"
            )


BUILT_IN: list[click.Command] = [list_cmd, disable_cmd, enable_cmd, formats_cmd]
