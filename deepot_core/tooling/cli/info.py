"""``info``: a transport file's metadata and diagnostics (validated as on load)."""
import json
from pathlib import Path

HELP = "show a transport file's metadata and diagnostics"


def add_parser(sub) -> None:
    p = sub.add_parser("info", help=HELP, description=HELP + ".")
    p.add_argument("file", type=Path, help="a .safetensors transport file")
    p.add_argument("--json", action="store_true", help="print the whole metadata document as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ...serialization import load_transport, read_metadata

    document = read_metadata(args.file)
    transport = load_transport(args.file)  # full validation: checksums, shapes
    if args.json:
        print(json.dumps(document, indent=1, sort_keys=True))
        return 0
    user = document.get("user", {})
    print(f"{args.file}")
    print(transport.report())
    print(f"space: {user.get('space', 'not recorded')}; harmonised: {user.get('harmonised', 'not recorded')}")
    print(f"created {document.get('created_iso', '?')} by deepot_core {document.get('package_version', '?')}")
    extra = {k: v for k, v in user.items() if k not in ("space", "harmonised")}
    if extra:
        print("metadata: " + json.dumps(extra, sort_keys=True))
    return 0
