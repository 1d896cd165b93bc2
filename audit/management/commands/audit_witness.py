import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import witness
from audit.verify_export import Unreadable

FETCH_TIMEOUT_SECONDS = 30


class Command(BaseCommand):
    help = (
        "Witness the audit log (C2SP tlog-witness style): co-sign the log's latest checkpoint "
        "only after checking its signature with a trusted log key and, with a consistency "
        "proof, that it extends the last checkpoint this witness co-signed for the log "
        "(--state). Refuses an unknown key, a smaller tree, the same size with another root (a "
        "fork) and a failing proof. The first checkpoint of a log is trusted on first use. "
        "Input from files (--checkpoint, --consistency) or from the running portal (--url with "
        "an auditor token). Needs no database: a second party runs it on their own machine."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--state",
            type=Path,
            help="JSON file with the last co-signed checkpoint per log (created on first use; "
            "back it up: losing it makes the witness trust the next checkpoint on first use)",
        )
        parser.add_argument(
            "--checkpoint",
            type=Path,
            help="the log's signed checkpoint: the note's text, or the JSON of "
            "GET /api/audit/checkpoint (default: the one in --consistency)",
        )
        parser.add_argument(
            "--consistency",
            type=Path,
            help="JSON of GET /api/audit/proof/consistency?from=<last co-signed size>&to=<size>",
        )
        parser.add_argument(
            "--url",
            help="the portal's base URL (https://portal.example.de): fetch the checkpoint and "
            "the consistency proof there instead of reading files",
        )
        parser.add_argument(
            "--token",
            help="an auditor's API token for --url (default PATTERM_WITNESS_TOKEN; the "
            "environment keeps it out of the process list)",
        )
        parser.add_argument(
            "--log-key",
            action="append",
            default=[],
            metavar="VERIFIER_KEY",
            help="a log key to trust, name+hash+base64 as the export header and "
            "/api/audit/checkpoint list it; repeat for a rotated key (default "
            "PATTERM_WITNESS_LOG_KEYS, comma-separated)",
        )
        parser.add_argument(
            "--key-file",
            type=Path,
            help="the witness's Ed25519 private key, raw 32 bytes in base64 (default "
            "PATTERM_WITNESS_KEY)",
        )
        parser.add_argument(
            "--name",
            help="the witness's key name in its signature lines, e.g. witness.example.org "
            "(default PATTERM_WITNESS_NAME)",
        )
        parser.add_argument(
            "--output",
            type=Path,
            help="write the co-signed checkpoint here (default: standard output; progress "
            "then goes to standard error)",
        )
        parser.add_argument(
            "--new-key",
            type=Path,
            metavar="FILE",
            help="create a new witness key in FILE (mode 0600, never overwritten), print its "
            "verifier key with --name, and exit",
        )
        parser.add_argument(
            "--show-key",
            action="store_true",
            help="print the witness's verifier key (to publish) and exit",
        )

    def handle(self, *args, **options):
        try:
            self._handle(**options)
        except (Unreadable, witness.Refused) as problem:
            raise CommandError(f"Not co-signed: {problem}") from None

    def _handle(self, **options):
        self.progress = self.stdout if options["output"] else self.stderr
        name = options["name"] or settings.PATTERM_WITNESS_NAME
        if not name:
            raise CommandError(
                "No witness name: pass --name (e.g. witness.example.org) or set "
                "PATTERM_WITNESS_NAME."
            )
        witness.key_name_check(name)
        if options["new_key"]:
            return self._new_key(options["new_key"], name)
        key = self._key(options["key_file"])
        if options["show_key"]:
            self.stdout.write(witness.verifier_key(key, name))
            return
        if not options["state"]:
            raise CommandError("--state is required: the file with the last co-signed checkpoint.")
        log_keys = options["log_key"] or settings.PATTERM_WITNESS_LOG_KEYS
        if not log_keys:
            raise CommandError(
                "No log key to trust: pass the log's verifier key with --log-key (or set "
                "PATTERM_WITNESS_LOG_KEYS). Take it from the clinic over a channel you trust."
            )
        verifiers = witness.log_verifiers(log_keys)
        with witness.state_locked(options["state"]):
            self._witness(options, verifiers, key, name)

    def _witness(self, options, verifiers, key, name):
        state = witness.state_read(options["state"])
        if options["url"]:
            note, proof = self._fetch(options["url"], options["token"], verifiers, state)
        else:
            note, proof = self._files(options["checkpoint"], options["consistency"])
        result = witness.witness(
            note=note, proof=proof, state=state, verifiers=verifiers, key=key, name=name
        )
        if result.old_size == 0:
            self.progress.write(
                f"First checkpoint of {result.origin} ({result.new_size} events): trusted on "
                "first use."
            )
        elif result.unchanged:
            self.progress.write(f"{result.origin} still has {result.new_size} events: unchanged.")
        else:
            self.progress.write(
                f"Consistency proof verified: {result.origin} grew from {result.old_size} to "
                f"{result.new_size} events, nothing before was changed."
            )
        try:
            witness.state_write(options["state"], state)
        except OSError as error:
            raise CommandError(
                f"The state file {options['state']} cannot be written ({error.strerror}): "
                "nothing was co-signed."
            ) from None
        if options["output"]:
            self._write(options["output"], result.cosigned)
            self.progress.write(
                self.style.SUCCESS(
                    f"Co-signed as {name}: {options['output']}; state saved to {options['state']}."
                )
            )
        else:
            self.stdout.write(result.cosigned, ending="")
            self.progress.write(self.style.SUCCESS(f"Co-signed as {name}; state saved."))

    # --- Keys and files -------------------------------------------------------------------

    def _new_key(self, path: Path, name: str) -> None:
        text = witness.new_private_key_text()
        try:
            with open(path, "x", encoding="ascii", opener=_private_opener) as out:
                out.write(text)
        except FileExistsError:
            raise CommandError(
                f"{path} exists already; a witness key is never overwritten."
            ) from None
        except OSError as error:
            raise CommandError(f"{path} cannot be written ({error.strerror}).") from None
        key = witness.private_key_parse(text, str(path))
        self.stderr.write(f"New witness key in {path}. Publish its verifier key:")
        self.stdout.write(witness.verifier_key(key, name))

    def _key(self, path: Path | None):
        if path is not None:
            return witness.private_key_parse(_read(path, "the witness key file"), str(path))
        if settings.PATTERM_WITNESS_KEY:
            return witness.private_key_parse(settings.PATTERM_WITNESS_KEY, "PATTERM_WITNESS_KEY")
        raise CommandError(
            "No witness key: pass --key-file (create one with --new-key) or set "
            "PATTERM_WITNESS_KEY."
        )

    def _files(self, checkpoint: Path | None, consistency: Path | None):
        proof = None
        if consistency is not None:
            proof = _json(_read(consistency, "the consistency proof"), consistency)
        if proof is not None and not isinstance(proof, dict):
            raise Unreadable(f"{consistency} is not a consistency proof (a JSON object)")
        if checkpoint is None:
            if proof is None or not isinstance(proof.get("checkpoint"), str):
                raise CommandError("Nothing to witness: give --checkpoint, --consistency or --url.")
            return proof["checkpoint"], proof
        note = _note(_read(checkpoint, "the checkpoint"), checkpoint)
        theirs = proof.get("checkpoint") if proof is not None else None
        if isinstance(theirs, str) and _body(theirs) != _body(note):
            raise witness.Refused(
                f"the consistency proof {consistency} ends at another checkpoint than {checkpoint}"
            )
        return note, proof

    def _write(self, path: Path, text: str) -> None:
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            raise CommandError(f"{path} cannot be written ({error.strerror}).") from None

    # --- The running portal ---------------------------------------------------------------

    def _fetch(self, url: str, token: str | None, verifiers: dict, state: dict):
        token = token or settings.PATTERM_WITNESS_TOKEN
        if not token:
            raise CommandError("--url needs an auditor's token: --token or PATTERM_WITNESS_TOKEN.")
        if not (token.isascii() and token.isprintable() and " " not in token):
            raise CommandError("The token is not an API token (printable ASCII, no spaces).")
        base = url.rstrip("/")
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise CommandError(f"--url {url} is not an http(s) address.")
        document = _get(f"{base}/api/audit/checkpoint", token)
        note = document.get("note") if isinstance(document, dict) else None
        if not isinstance(note, str):
            raise Unreadable(f"{base}/api/audit/checkpoint did not answer a checkpoint")
        origin, size, _ = witness.checkpoint_open(note, verifiers)
        self.progress.write(f"Checkpoint of {origin} from {base}: {size} events.")
        last = state.get(origin)
        if last is None or last["size"] >= size:
            return note, None
        query = urllib.parse.urlencode({"from": last["size"], "to": size})
        proof = _get(f"{base}/api/audit/proof/consistency?{query}", token)
        self.progress.write(f"Consistency proof from {last['size']} to {size} fetched.")
        return note, proof


def _private_opener(path, flags):
    return os.open(path, flags, 0o600)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Unreadable(f"{what} {path} does not exist") from None
    except UnicodeDecodeError:
        raise Unreadable(f"{what} {path} is not UTF-8 text") from None
    except OSError as error:
        raise Unreadable(f"{what} {path} cannot be read ({error.strerror})") from None


def _json(text: str, path) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise Unreadable(f"{path} is not JSON ({error.msg}, line {error.lineno})") from None


def _note(text: str, path: Path) -> str:
    """The checkpoint note of a file: the note itself, or GET /api/audit/checkpoint's JSON."""
    if text.lstrip().startswith("{"):
        document = _json(text, path)
        if not isinstance(document, dict) or not isinstance(document.get("note"), str):
            raise Unreadable(f"{path} is JSON but not GET /api/audit/checkpoint's answer")
        return document["note"]
    return text


def _body(note: str) -> str:
    return note[: note.rindex("\n\n") + 1] if "\n\n" in note else note


def _get(url: str, token: str) -> object:
    request = urllib.request.Request(  # noqa: S310 (scheme checked: http or https)
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as error:
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(error.read()).get("detail", "")
        raise CommandError(f"{url} answered {error.code} {detail}".rstrip()) from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise CommandError(f"{url} cannot be reached ({reason}).") from None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Unreadable(f"{url} did not answer JSON") from None
