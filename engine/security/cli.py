"""Command-line glue: CURVE flags of ``serve``/``feed``/``watch`` and ``tickpath keys``.

``tickpath keys new NAME [--dir DIR]`` creates ``NAME.key`` (public) and
``NAME.key_secret`` (secret, mode 0600); ``tickpath keys list [--dir DIR]``
shows the certificates of a directory with their public keys.  The default
directory is ``$TICKPATH_KEYS_DIR`` or ``~/.config/tickpath/keys``.
"""

from __future__ import annotations

import argparse
import json
import sys

from tickpath.engine.security.config import SecurityConfig


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The CURVE flags of ``tickpath serve`` (they switch CURVE on)."""
    parser.add_argument(
        "--curve-secret-key",
        metavar="FILE",
        help="enable CURVE on every "
        "endpoint with this server certificate (NAME.key_secret from "
        "`tickpath keys new`)",
    )
    parser.add_argument(
        "--curve-allow",
        metavar="DIR",
        help="with CURVE: directory of the client public keys (*.key) allowed to connect",
    )
    parser.add_argument(
        "--curve-allow-any",
        action="store_true",
        help="with CURVE: accept any client key (encryption without authentication)",
    )


def serve_overrides(args: argparse.Namespace) -> dict:
    """Config overrides from the CURVE flags."""
    if not (args.curve_secret_key or args.curve_allow or args.curve_allow_any):
        return {}
    return {
        "security.curve": True,
        "security.secret_key": args.curve_secret_key,
        "security.allow": args.curve_allow,
        "security.allow_any": True if args.curve_allow_any else None,
    }


def serve_extensions(config: SecurityConfig) -> list:
    """``[SecurityExtension]``: the allow-list with CURVE on, a warning on open endpoints off."""
    from tickpath.engine.security.extension import SecurityExtension

    return [SecurityExtension(config)]


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """``--curve-server-key`` / ``--curve-key`` for a client (feed, watch)."""
    parser.add_argument(
        "--curve-server-key",
        metavar="FILE",
        help="connect with CURVE to the server whose public key (NAME.key) is FILE",
    )
    parser.add_argument(
        "--curve-key",
        metavar="FILE",
        help="with --curve-server-key: this "
        "client's certificate (NAME.key_secret); default: a throwaway key, "
        "accepted only by a server that allows any key",
    )


def client_curve(args: argparse.Namespace) -> tuple[str, str | None] | None:
    """``(server public key file, client secret key file or None)``, or None without CURVE."""
    server = getattr(args, "curve_server_key", None)
    client = getattr(args, "curve_key", None)
    if server is None:
        if client is not None:
            raise ValueError("--curve-key needs --curve-server-key")
        return None
    return server, client


def add_keys_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``tickpath keys new|list`` to the sub-command parsers."""
    p = sub.add_parser(
        "keys",
        help="create and list CURVE key pairs",
        description="CURVE key pairs for the engine and its clients (ZeroMQ certificate files).",
    )
    actions = p.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=type(p))
    actions.required = True
    new = actions.add_parser("new", help="create NAME.key and NAME.key_secret")
    new.add_argument("name", metavar="NAME")
    new.add_argument(
        "--dir",
        metavar="DIR",
        help="key directory (default $TICKPATH_KEYS_DIR or ~/.config/tickpath/keys)",
    )
    new.set_defaults(func=_keys_new)
    listing = actions.add_parser("list", help="list the key pairs of a directory")
    listing.add_argument("--dir", metavar="DIR", help="key directory (default as for new)")
    listing.add_argument("--json", action="store_true", help="one JSON object per key")
    listing.set_defaults(func=_keys_list)


def _keys_new(args: argparse.Namespace) -> int:
    from tickpath.engine.security.keys import keys_dir, new_keypair

    directory = keys_dir(args.dir)
    try:
        public, secret = new_keypair(directory, args.name)
    except (FileExistsError, ValueError) as exc:
        print(f"tickpath keys: error: {exc}", file=sys.stderr)
        return 2
    print(f"public key {public} (give it to peers / put it in an allow directory)")
    print(f"secret key {secret} (keep it private)")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from tickpath.engine.security.keys import keys_dir, list_keys

    directory = keys_dir(args.dir)
    for info in list_keys(directory):
        if args.json:
            print(
                json.dumps(
                    {
                        "name": info.name,
                        "public_key": info.public_key,
                        "secret": info.has_secret,
                        "path": str(info.path),
                    }
                )
            )
        else:
            print(f"{info.name:24} {info.public_key}  {'secret' if info.has_secret else 'public'}")
    return 0
