"""The ``tradepulse`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from services.registry import DOMAINS, SOURCES

if TYPE_CHECKING:
    from services.runtime.settings import S, Settings

SERVICES = tuple(DOMAINS)


def _settings_or_exit() -> Settings:
    from services.runtime.settings import Settings

    return _load_or_exit(Settings)


def _load_or_exit(kind: type[S]) -> S:
    """Settings of ``kind``, or exit 2 with one line per bad variable (a secret's value is never
    echoed)."""
    from services.runtime.security import SECRET_VARIABLES, ConfigError
    from services.runtime.settings import load_settings

    try:
        return load_settings(kind)
    except ConfigError as exc:
        print(f"tradepulse: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            message = str(err["msg"]).removeprefix("Value error, ")
            if not err["loc"]:  # a rule across settings: its message names them
                lines.append(f"  {message}")
                continue
            name = str(err["loc"][0])
            env = name if name.isupper() else f"TRADEPULSE_{name.upper()}"
            shown = "" if env in SECRET_VARIABLES else f" (got {err.get('input')!r})"
            lines.append(f"  {env}: {message}{shown}")
        print("tradepulse: bad configuration:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def cmd_stack(args: argparse.Namespace) -> int:
    from services.devstack.stack import Stack

    stack = Stack()
    lines = {"up": stack.up, "down": stack.down, "status": stack.status}[args.action]()
    print("\n".join(lines))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from services.runtime.logs import logging_config
    from services.runtime.worker import ServiceWorker, build_worker, tune_gc

    if args.service == "release":
        return cmd_release(args)
    settings = _settings_or_exit()
    config = logging_config(level=settings.log_level, fmt=settings.log_format)
    logging.config.dictConfig(config)
    domain = DOMAINS[args.service]
    worker = build_worker(settings, domain, foreign=[d for d in DOMAINS if d != args.service])
    asyncio.run(worker.preflight())  # StartupError: one line naming the fix, exit 2 (main)
    logging.getLogger("tradepulse").info(
        "starting worker",
        extra={
            "service": args.service,
            "bootstrap": settings.kafka_bootstrap_servers,
            "web": f"http://{settings.web_host}:{settings.port_for(domain.port)}",
        },
    )
    tune_gc(settings.gc_gen0_threshold)
    ServiceWorker(
        worker.app,
        loglevel=settings.log_level,
        logging_config=config,
        redirect_stdouts=False,
        quiet=True,
        stop_timeout_s=settings.stop_timeout_s,
    ).execute_from_commandline()
    return 0


def _check_or_write(
    check: bool, what: str, drift: Callable[[], list[str]], write: Callable[[], list[str]]
) -> int:
    """``--check``: exit 1 naming what differs from what the code generates; else write it."""
    try:
        if check:
            stale = drift()
            if stale:
                print(f"{what} differ from what the code generates; run `tradepulse generate`:\n  "
                      + "\n  ".join(stale), file=sys.stderr)  # fmt: skip
                return 1
            print(f"{what} match the code")
            return 0
        written = write()
    except ValueError as exc:  # a region's marker is gone
        print(f"tradepulse: {exc}", file=sys.stderr)
        return 2
    if not written:
        print(f"{what} match the code already")
    else:
        print(f"wrote {len(written)} files" + "".join(f"\n  {w}" for w in written))
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from services.contract import schemas as schemas_export
    from services.gateway import openapi
    from services.registry import catalogs, derived

    extra = openapi.documents()
    return _check_or_write(
        args.check,
        "schemas/",
        lambda: schemas_export.check(catalogs(), derived=derived(), extra=extra),
        lambda: schemas_export.write(catalogs(), derived=derived(), extra=extra),
    )


def cmd_calendar(args: argparse.Namespace) -> int:
    """Check a working-day year file as the services will at start-up, and show what it says."""
    from datetime import date, timedelta

    from services.workdays import WorkdayCalendar, holiday_blocks, load_yaml

    years = load_yaml(Path(args.file))  # CalendarError: one line naming the problem (main)
    calendar = WorkdayCalendar.with_file(Path(args.file))
    for year in sorted(years):
        first, last = date(year, 1, 1), date(year, 12, 31)
        days = (last - first).days + 1
        workdays = sum(calendar.is_workday(first + timedelta(days=i)) for i in range(days))
        blocks = ", ".join(
            f"{a}" + (f"..{b}" if b != a else "") + f" ({(b - a).days + 1})"
            for a, b in holiday_blocks(calendar, year)
        )
        adjusted = ", ".join(str(d) for d in sorted(years[year].workdays)) or "none"
        print(f"{year}: {workdays} working days; days off around holidays: {blocks or 'none'}; "
              f"weekend working days: {adjusted}")  # fmt: skip
    last_date = calendar.last_date()
    print(f"{args.file}: ok; with the built-in data the calendar reaches {last_date}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from services.tools.publish import publish_file

    settings = _settings_or_exit()
    return asyncio.run(publish_file(settings, args.topic, args.file, binary=args.binary))


def cmd_tail(args: argparse.Namespace) -> int:
    from services.tools.publish import tail_topic

    settings = _settings_or_exit()
    return asyncio.run(
        tail_topic(
            settings,
            args.topic,
            limit=args.limit,
            timeout_s=args.timeout,
            everything=args.all,
            grep=args.grep,
        )
    )


def cmd_run(args: argparse.Namespace) -> int:
    from services.tools.run import run_main

    unknown = sorted(set(args.services) - set(SERVICES))
    if unknown:
        print(
            f"tradepulse run: unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}",
            file=sys.stderr,
        )
        return 2
    return run_main(services=args.services or list(SERVICES), simulators=not args.no_simulators)


def cmd_simulate(args: argparse.Namespace) -> int:
    import time

    from services.tools.simulate import Faults, run_simulation

    settings = _settings_or_exit()
    faults = Faults(
        duplicates=args.duplicates,
        shuffle=args.shuffle,
        late=args.late,
        invalid=args.invalid,
        binary=args.binary,
    )
    start = time.time() - args.days_ago * 86400
    span_hours = args.span_hours
    if args.peak_day:  # the last 11.11 with the days around it (the CBEC simulator weights the 11th 4x)
        from datetime import datetime

        from services.engine.windows import SHANGHAI

        now = datetime.now(SHANGHAI)
        year = now.year if (now.month, now.day) >= (11, 12) else now.year - 1
        start, span_hours = datetime(year, 11, 10, tzinfo=SHANGHAI).timestamp(), 72.0
    return run_simulation(
        settings,
        args.service,
        cases=args.cases,
        seed=args.seed,
        start_s=start,
        span_s=span_hours * 3600,
        faults=faults,
        rate=args.rate,
        progress=not args.quiet,
        follow=args.follow,
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from services.tools import generate

    return _check_or_write(args.check, "the generated files", generate.check, generate.write)


def cmd_release(args: argparse.Namespace) -> int:
    from services.release.service import ReleaseSettings, run_release
    from services.runtime.logs import logging_config

    settings = _load_or_exit(ReleaseSettings)
    logging.config.dictConfig(logging_config(level=settings.log_level, fmt=settings.log_format))
    return run_release(settings)


def cmd_release_export(args: argparse.Namespace) -> int:
    from services.release.export import export_day
    from services.release.service import ReleaseSettings

    for path in export_day(_load_or_exit(ReleaseSettings), args.destination, args.date, Path(args.out)):
        print(path)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from services.runtime.logs import logging_config
    from services.tools.history import run_history

    settings = _settings_or_exit()
    logging.config.dictConfig(logging_config(level=settings.log_level, fmt=settings.log_format))
    return run_history(settings)


def cmd_gateway(args: argparse.Namespace) -> int:
    from services.gateway.app import GatewaySettings, serve
    from services.gateway.credentials import CredentialsError
    from services.runtime.logs import logging_config

    settings = _settings_or_exit()
    try:
        config = GatewaySettings()
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = f"TRADEPULSE_GATEWAY_{str(err['loc'][0]).upper()}" if err["loc"] else "TRADEPULSE_GATEWAY_*"
        fix = " (make one: tradepulse gateway-key NAME)" if "CREDENTIALS" in name else ""
        print(f"tradepulse gateway: bad configuration: {name}: {err['msg']}{fix}", file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config(level=settings.log_level, fmt=settings.log_format))
    try:
        asyncio.run(serve(settings, config, settings.stop_timeout_s))
    except CredentialsError as exc:
        print(f"tradepulse gateway: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_gateway_key(args: argparse.Namespace) -> int:
    from services.gateway.credentials import new_key

    key, digest = new_key()
    print(f"API key (give it to the producer; it is shown once): {key}", file=sys.stderr)
    print(
        f'- name: {args.name}\n  key_sha256: {digest}\n  sources: ["/your/source/"]\n  types: ["customs.*"]'
    )
    return 0


def cmd_bench_compare(args: argparse.Namespace) -> int:

    from services.tools.bench_compare import run_compare

    out = Path(args.out or f"bench-results/compare-{args.target}.json")
    report = run_compare(old=args.old, target=args.target, events=args.events, rounds=args.rounds, out=out)
    print(f"new/old {report['new_over_old']} (by round {report['new_over_old_by_round']}); {out}")
    return 0


def cmd_acls(args: argparse.Namespace) -> int:
    from services.tools.acls import print_acls

    settings = _settings_or_exit()
    return print_acls(args.process, args.principal, settings, args.format)


def cmd_topics(args: argparse.Namespace) -> int:
    from services.tools.acls import print_topics

    settings = _settings_or_exit()
    return print_topics(args.service, settings)


def cmd_bench(args: argparse.Namespace) -> int:

    from services.tools.bench import run_bench

    out = Path(args.out or f"bench-results/{args.target}.json")
    if args.target == "gateway":
        from services.tools.bench_gateway import run_gateway_bench

        run_gateway_bench(events=args.events, out=out, rounds=args.rounds)
        return 0
    if args.target == "state":
        from services.tools.bench_state import run_state_bench

        orders = [int(n) for n in args.orders.split(",")]
        run_state_bench(orders=orders, out=out)
        return 0
    if args.target == "cycle-memory":
        import json

        from services.tools.bench_memory import bytes_per_open_entry

        result = {"target": args.target, "entries": 20_000, "bytes_per_open_entry": bytes_per_open_entry()}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))
        return 0
    run_bench(events=args.events, partitions=args.partitions, out=out, rate=args.rate, latency_s=args.seconds,
              target=args.target, rounds=args.rounds, span_h=args.span_h, late=args.late)  # fmt: skip
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tradepulse", description="Live trade-facilitation indicators.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("stack", help="local Kafka broker and PostgreSQL cluster")
    s.add_argument("action", choices=["up", "down", "status"])
    s.set_defaults(func=cmd_stack)

    w = sub.add_parser("worker", help="run one service's worker")
    w.add_argument("service", choices=[*SERVICES, "release"])
    w.set_defaults(func=cmd_worker, long_running=True)

    rel = sub.add_parser("release", help="the cross-border release: files for a data-export centre")
    rel_sub = rel.add_subparsers(dest="action", required=True)
    rex = rel_sub.add_parser(
        "export", help="one destination's cells of one day as CSV and JSON with SHA-256 sums"
    )
    rex.add_argument("--destination", required=True, help="as the policy names it, e.g. hk")
    rex.add_argument("--date", required=True, type=date.fromisoformat, help="the day, e.g. 2025-03-01")
    rex.add_argument("--out", default=".", help="folder of the files (default: here)")
    rex.set_defaults(func=cmd_release_export)

    sc = sub.add_parser("schemas", help="JSON Schemas and AsyncAPI document")
    sc_sub = sc.add_subparsers(dest="action", required=True)
    ex = sc_sub.add_parser("export", help="regenerate schemas/ from the models")
    ex.add_argument("--check", action="store_true", help="fail if schemas/ differs instead of writing")
    ex.set_defaults(func=cmd_schemas)

    pub = sub.add_parser("publish", help="publish CloudEvents from a JSON file (or - for stdin)")
    pub.add_argument("topic", help="contract topic name, e.g. customs.events.v1")
    pub.add_argument("file", help="a JSON event, a JSON list of events, or JSON lines; - reads stdin")
    pub.add_argument("--binary", action="store_true", help="binary content mode (ce_* headers)")
    pub.set_defaults(func=cmd_publish)

    t = sub.add_parser("tail", help="print records of a topic with their headers (e.g. a .dlq topic)")
    t.add_argument("topic")
    t.add_argument("--limit", type=int, default=20, help="the last LIMIT records of each partition (20)")
    t.add_argument("--timeout", type=float, default=5.0, help="stop reading after this many seconds (5)")
    t.add_argument("--all", action="store_true", help="every record of the topic, not the last LIMIT")
    t.add_argument("--grep", default="", help="only the records holding TEXT, searched in the whole topic")
    t.set_defaults(func=cmd_tail)

    sim = sub.add_parser("simulate", help="publish realistic events (with duplicates, disorder, bad input)")
    sim.add_argument("service", choices=tuple(SOURCES))
    sim.add_argument("--cases", type=int, default=1000, help="cases (declarations, ...) to simulate")
    sim.add_argument("--rate", type=float, default=200.0, help="records per second; 0 = as fast as possible")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--days-ago", type=float, default=3.0, help="first case lodged this many days ago")
    sim.add_argument("--span-hours", type=float, default=48.0, help="cases start over this many hours")
    sim.add_argument("--duplicates", type=float, default=0.02, help="fraction re-sent with the same id")
    sim.add_argument("--shuffle", type=float, default=0.05, help="fraction moved out of order")
    sim.add_argument("--late", type=float, default=0.01, help="fraction held back 1-3 hours of event time")
    sim.add_argument("--invalid", type=float, default=0.005, help="fraction of extra invalid records")
    sim.add_argument("--binary", type=float, default=0.5, help="fraction sent in binary content mode")
    sim.add_argument("--quiet", action="store_true", help="no progress display")
    sim.add_argument(
        "--follow", action="store_true", help="then send each later event when its time comes (a live feed)"
    )
    sim.add_argument(
        "--peak-day",
        action="store_true",
        help="simulate 10-12 November of the last 11.11 (CBEC: four times the orders on the 11th)",
    )
    sim.set_defaults(func=cmd_simulate)

    h = sub.add_parser("history", help="write indicator revisions and every case state to PostgreSQL")
    h.set_defaults(func=cmd_history, long_running=True)

    a = sub.add_parser("acls", help="print the kafka-acls commands that grant one process what it needs")
    a.add_argument("process", choices=[*SERVICES, "release", "history", "gateway", "producer"])
    a.add_argument("--principal", required=True, help="e.g. User:tradepulse-customs")
    a.add_argument("--format", choices=["kafka-acls", "strimzi"], default="kafka-acls",
                   help="kafka-acls.sh commands, or a Strimzi KafkaUser with the same ACLs")  # fmt: skip
    a.set_defaults(func=cmd_acls)

    t = sub.add_parser("topics", help="print the kafka-topics commands that create a service's topics")
    t.add_argument("service", choices=SERVICES)
    t.set_defaults(func=cmd_topics)

    g = sub.add_parser("gateway", help="HTTP ingest gateway: CloudEvents over HTTP into Kafka")
    g.set_defaults(func=cmd_gateway, long_running=True)
    gk = sub.add_parser("gateway-key", help="make an API key for the gateway and its credentials entry")
    gk.add_argument("name", help="the producer's name (in logs and metrics)")
    gk.set_defaults(func=cmd_gateway_key)

    cal = sub.add_parser("calendar", help="the working-day calendar: check a year file before it is used")
    cal_sub = cal.add_subparsers(dest="action", required=True)
    check = cal_sub.add_parser(
        "check", help="validate a year file and print each year's working days and holidays"
    )
    check.add_argument("file", help="the YAML file of TRADEPULSE_WORKDAYS_FILE (docs/calendar.md)")
    check.set_defaults(func=cmd_calendar)

    gen = sub.add_parser(
        "generate",
        help="write every file that lists domains (compose, scrape config, secure set-up, dashboards, "
        "the chart's files, README sample) from services/registry.py",
    )
    gen.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    gen.set_defaults(func=cmd_generate)

    b = sub.add_parser("bench", help="throughput benchmarks; write JSON results")
    b.add_argument("target", choices=["customs", "cbec", "gateway", "cycle-memory", "state"])
    b.add_argument("--events", type=int, default=50_000)
    b.add_argument("--rate", type=float, default=500.0, help="offered load of the latency run, events/s")
    b.add_argument("--seconds", type=float, default=30.0, help="length of the latency run")
    b.add_argument("--partitions", type=int, default=4)
    b.add_argument("--rounds", type=int, default=3, help="runs of each variant, interleaved (medians)")
    b.add_argument("--span-h", type=float, default=24.0, help="hours of event time the records cover")
    b.add_argument("--late", type=float, default=0.0, help="fraction of events delivered after their window")
    b.add_argument("--orders", default="100000,1000000,5000000", help="state: kept orders, comma-separated")
    b.add_argument("--out", help="result file (default bench-results/<target>.json)")
    b.set_defaults(func=cmd_bench)

    bc = sub.add_parser("bench-compare", help="a worker at an older commit against the working tree (JSON)")
    bc.add_argument("old", help="the older commit (anything git rev-parse takes)")
    bc.add_argument("--target", choices=list(SOURCES), default="customs")
    bc.add_argument("--events", type=int, default=40_000)
    bc.add_argument("--rounds", type=int, default=3)
    bc.add_argument("--out", help="result file (default bench-results/compare-<target>.json)")
    bc.set_defaults(func=cmd_bench_compare)

    r = sub.add_parser("run", help="the main job: stack, every service, URLs; Ctrl-C stops all")
    r.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)}")
    r.add_argument("--no-simulators", action="store_true", help="start no simulated traffic")
    r.set_defaults(func=cmd_run)
    return p


def long_running_commands() -> list[list[str]]:
    """Every command that runs until it is stopped, with each choice of its positional argument
    (``worker customs``, ...): what a deployment must run, read from the parser itself."""
    commands: list[list[str]] = []
    subparsers = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        if not sub.get_default("long_running"):
            continue
        choices = [a.choices for a in sub._actions if not a.option_strings and a.choices]
        commands.extend([[name, str(c)] for c in choices[0]] if choices else [[name]])
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. What the operator must fix (a broker, a topic, a program, a database) is
    reported in one line naming the fix, with exit status 2, never as a traceback."""
    from services.devstack.process import StackError
    from services.runtime.kafka_admin import StartupError
    from services.runtime.logs import logging_config
    from services.workdays import CalendarError

    args = parser().parse_args(argv)
    logging.config.dictConfig(logging_config(level="warning", fmt="text", tool=True))  # services: their own
    try:
        return int(args.func(args))
    except (StartupError, StackError, CalendarError) as exc:
        first, _, more = str(exc).partition("\n")
        label = " ".join([args.command, *([args.service] if getattr(args, "service", None) else [])])
        print(f"tradepulse {label}: {first}", file=sys.stderr)
        if more.strip():
            logging.getLogger("tradepulse").debug("details: %s", more)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not a file the command was given
            raise
        print(f"tradepulse {args.command}: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
