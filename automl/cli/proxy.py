"""``automl storage-proxy``: one node's gateway to Optuna's tables (Optuna's gRPC proxy).

Every worker process opens its own small pool of database connections. With many
workers per node (or many nodes), run one proxy per node and start the workers with
``--optuna-proxy HOST:PORT``: their Optuna calls (ask, report, tell, reading trials) go
through the proxy's single pool and its cache of finished trials, and the database sees
one client per node for Optuna. The service's queue (claim, lease, release) still goes
to the database directly, from each worker, one connection each.

The proxy has no authentication: it listens on 127.0.0.1 by default, for the workers of
its own node. Binding another address exposes read and write access to every study.
"""

from __future__ import annotations

import argparse
import sys

from automl.cli.dashboard import is_loopback
from automl.cli.main import storage_argument, storage_of
from automl.queue.engine import make_engine
from automl.queue.schema import check_schema
from automl.study.studies import make_storage


def register(commands: argparse._SubParsersAction) -> None:
    proxy = commands.add_parser(
        "storage-proxy", help="serve Optuna's storage to this node's workers over gRPC "
        "(workers: --optuna-proxy HOST:PORT)")
    storage_argument(proxy)
    proxy.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default 127.0.0.1: this node's workers only)")
    proxy.add_argument("--port", type=int, default=13000, help="port (default 13000)")
    proxy.set_defaults(run=run_proxy)


def run_proxy(args: argparse.Namespace) -> int:
    from optuna.storages import run_grpc_proxy_server

    url = storage_of(args)
    check_schema(make_engine(url))  # the same refusal as a worker's, before serving
    if not is_loopback(args.host):
        print(f"WARNING: the storage proxy on {args.host}:{args.port} has no "
              "authentication: anyone who reaches it can read and change every study",
              file=sys.stderr)
    print(f"storage proxy on {args.host}:{args.port}", file=sys.stderr, flush=True)
    run_grpc_proxy_server(make_storage(url), host=args.host, port=args.port)
    return 0
