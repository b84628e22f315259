"""``gpuprov profiles``: the tuning profiles gpuprov knows, and which fit this host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli import app

if TYPE_CHECKING:
    from provision.profiles.schema import Profile
    from provision.snapshot import Snapshot

profiles_app = typer.Typer(
    help="List tuning profiles (built-in, /etc/gpuprov/profiles/, ~/.config/gpuprov/profiles/).",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(profiles_app, name="profiles")

FromOption = Annotated[
    Path | None, typer.Option("--from", metavar="FILE", help="Match against a saved snapshot, not this host.")
]


def _snapshot(from_file: Path | None) -> Snapshot:
    from provision import snapshotfile

    if from_file is not None:
        return snapshotfile.load(from_file)
    from provision.probe import plan_snapshot

    return plan_snapshot()


def _fit(profile: Profile, snap: Snapshot) -> str:
    if not snap.driver.nvml.ok:
        return "no GPU/driver"
    hits = [g.index for g in profile.match.matching(snap.gpus)]
    if not hits:
        return "no"
    return "yes" if len(hits) == len(snap.gpus) else "GPU " + ", ".join(map(str, hits))


@profiles_app.callback()
def profiles(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the profiles as JSON.")] = False,
    from_file: FromOption = None,
) -> None:
    """List the profiles and whether each fits this host's GPUs. `gpuprov profiles show NAME` prints one."""
    if ctx.invoked_subcommand is not None:
        return
    from provision.console import make_console
    from provision.profiles.loader import profile_set
    from provision.tuningreport import render_profiles

    loaded, errors = profile_set().load_all()
    snap = _snapshot(from_file)
    rows = [(p, _fit(p, snap)) for p in loaded]
    if as_json:
        payload = {
            "profiles": [{**p.to_dict(), "fits_this_host": fit} for p, fit in rows],
            "errors": [str(e) for e in errors],
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        render_profiles(rows, errors, make_console())
    raise typer.Exit(1 if errors else 0)


@profiles_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON instead of YAML.")] = False,
) -> None:
    """Print the resolved profile (after `extends:`), with the files it comes from."""
    from provision.profiles.loader import load_profile

    profile = load_profile(name)
    data = profile.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    import yaml

    from provision.console import printable_copy

    # a user's profile may hold invisible or bidi characters: YAML prints them as they are, we show escapes
    typer.echo(yaml.safe_dump(printable_copy(data), sort_keys=False, allow_unicode=True, width=100), nl=False)
