"""`mnist-bench report`: one offline, interactive page of every run, sweep, verification and suite under the paths."""

from __future__ import annotations

from pathlib import Path

from benchmarks.commands.flags import CliError
from common.errors import EXIT_OK


def cmd_report(args) -> int:
    """Write DIR/index.html (and its assets) from everything found under the paths."""
    from benchmarks.report.history import ACKNOWLEDGED_FILE, NothingToReport, find_reports, load_acknowledged, warn
    from benchmarks.report.site import write_site
    from common.atomic import claim_output_directory, new_output_directory

    try:
        found = find_reports(args.paths)
        acknowledged = load_acknowledged(Path(args.acknowledged or Path(args.paths[0]) / ACKNOWLEDGED_FILE))
    except (NothingToReport, ValueError) as error:
        raise CliError(str(error)) from None
    warn(found.skipped)
    out = claim_output_directory(Path(args.out) if args.out else new_output_directory("report-"))
    index = write_site(found, out, acknowledged, args.paths)
    print(f"{len(found.runs)} runs, {len(found.sweeps)} sweeps, {len(found.verifies)} verifications, "
          f"{len(found.suites)} suites ({len(found.skipped)} files skipped)\nreport: {index} (open it in a browser; "
          "it needs no network)")
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    report = commands.add_parser("report", formatter_class=formatter,
                                 help="an offline interactive HTML report of runs, comparisons, history, sweeps")
    report.add_argument("paths", nargs="+", metavar="PATH",
                        help="run, sweep, verify or suite folders, or folders holding them (searched recursively)")
    report.add_argument("--out", default=None, help="site folder (default: runs/report-<UTC timestamp>)")
    report.add_argument("--acknowledged", default=None, metavar="FILE",
                        help="acknowledged regressions (default: the first PATH's acknowledged-regressions.json)")
    report.set_defaults(handler=cmd_report)
