"""Master key rotation on PostgreSQL, against raw AES-GCM unwrap and wrap in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/keys.py
    ... bench/keys.py --keys 50000 --batch-size 1000
    ... bench/keys.py --quick

Builds a throwaway database `bench_keys` with --keys patient data keys wrapped under master key
version 1. Each of --rounds rounds adds the next master key version and times
`vault.services.master_key_rotate` (what `rotate_master_key` runs: batches read ahead, unwrap,
wrap, one compare-and-set bulk update overlapped with the next batch's re-wrap and one audit
row per batch) re-wrapping every key under it,
beside the floor: the same wrapped keys, already in memory, unwrapped and wrapped again with
`cryptography`'s AESGCM and nothing else (the two in alternating order). The figure is the
median of the rounds' ratios. Each round starts from a vacuumed table, as a table of keys made
over months is; after each, every key is checked to be on the new version and a sample to open.
"""

import argparse
import base64
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Figure,
    add_output_arguments,
    django_on,
    profile_to,
    write_figures,
)

DATABASE = "bench_keys"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10_000, help="patient data keys to re-wrap")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument(
        "--rounds", type=int, default=5, help="rotations of every key, each beside the floor"
    )
    parser.add_argument("--quick", action="store_true", help="500 keys, 3 rounds")
    parser.add_argument("--profile-dir", help="write pyinstrument reports of missed goals here")
    add_output_arguments(parser)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.keys, arguments.rounds = 500, 3
    sizes = {
        "data keys": arguments.keys,
        "batch size": arguments.batch_size,
        "rounds (median)": arguments.rounds,
    }
    print("sizes: " + ", ".join(f"{name} {value}" for name, value in sizes.items()), flush=True)

    django_on(DATABASE, "bench/keys.py")
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from django.conf import settings
    from django.db import connection

    from accounts.models import User
    from vault import crypto, keys
    from vault.models import PatientKey
    from vault.services import master_key_rotate

    print(f"PostgreSQL {connection.pg_version // 10000}, database {DATABASE}")
    master_keys = {1: crypto.generate_key()}

    def ring_up_to(version: int) -> str:
        """PATTERM_MASTER_KEYS with `version` active and every older version still listed."""
        return ",".join(
            f"{v}:{base64.b64encode(master_keys[v]).decode()}" for v in range(version, 0, -1)
        )

    def vacuum() -> None:
        # A table of keys created over months has been vacuumed long before a rotation; one
        # bulk-inserted a second earlier has not (every first touch of a row would then also
        # set its hint bits). Each round starts from the vacuumed table, outside the timing.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE vault_patientkey")

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_user (password, email, role, first_name, last_name, is_active,"
            " is_staff, is_superuser, date_joined) SELECT '!', 'k' || n || '@bench.de', "
            "'patient', 'K', 'N' || n, true, false, false, now() "
            "FROM generate_series(1, %s) AS n",
            [arguments.keys],
        )
    settings.PATTERM_MASTER_KEYS = ring_up_to(1)
    PatientKey.objects.bulk_create(
        [
            PatientKey(patient_id=patient_id, master_key_version=version, wrapped_key=wrapped)
            for patient_id in User.objects.values_list("pk", flat=True)
            for version, wrapped in [keys.wrap(patient_id=patient_id, key=crypto.generate_key())]
        ],
        batch_size=2000,
    )

    def floor(old_version: int, new_version: int, wrapped: list) -> float:
        """Seconds to unwrap and wrap `wrapped` in memory with raw AES-GCM, same associated data."""
        old_aead = AESGCM(master_keys[old_version])
        new_aead = AESGCM(master_keys[new_version])
        started = time.perf_counter()
        for patient_id, stored in wrapped:
            sealed = bytes(stored)
            plain = old_aead.decrypt(
                sealed[:12],
                sealed[12:],
                f"patterm:patient-key:v1|patient={patient_id}|master={old_version}".encode(),
            )
            nonce = os.urandom(12)
            new_aead.encrypt(
                nonce,
                plain,
                f"patterm:patient-key:v1|patient={patient_id}|master={new_version}".encode(),
            )
        return time.perf_counter() - started

    def rotate() -> float:
        started = time.perf_counter()
        result = master_key_rotate(batch_size=arguments.batch_size)
        seconds = time.perf_counter() - started
        if result.rewrapped != arguments.keys:
            raise SystemExit(f"re-wrapped {result.rewrapped} of {arguments.keys} keys")
        return seconds

    # Rounds: each rotates every key to the next master key version and runs the floor over the
    # same wrapped keys, the two in alternating order, so that a change of the machine's load
    # falls on both; the figure is the median of the rounds' ratios.
    floors, rotations = [], []
    for round_ in range(arguments.rounds):
        old_version, new_version = round_ + 1, round_ + 2
        master_keys[new_version] = crypto.generate_key()
        settings.PATTERM_MASTER_KEYS = ring_up_to(new_version)
        # As the driver returns them (memoryview): the floor makes the bytes, as rotation does.
        wrapped = list(PatientKey.objects.values_list("patient_id", "wrapped_key"))
        vacuum()
        if round_ % 2:
            rotations.append(rotate())
            floors.append(floor(old_version, new_version, wrapped))
        else:
            floors.append(floor(old_version, new_version, wrapped))
            rotations.append(rotate())
        if PatientKey.objects.exclude(master_key_version=new_version).exists():
            raise SystemExit("keys left on an old master key")
        for patient_key in PatientKey.objects.order_by("?")[:50]:
            keys.unwrap(patient_key)  # raises when a re-wrapped key does not open

    rate = arguments.keys / statistics.median(rotations)
    floor_rate = arguments.keys / statistics.median(floors)
    ratio = statistics.median(f / r for f, r in zip(floors, rotations, strict=True))
    print(
        f"\nRe-wrapping {arguments.keys:,} data keys, batches of {arguments.batch_size}, "
        f"median of {arguments.rounds} rounds:"
    )
    print(f"{'':<36}{'keys/s':>12}{'x floor':>10}")
    print(f"{'raw AES-GCM unwrap + wrap (floor)':<36}{floor_rate:>12.0f}{1:>10.2f}")
    print(f"{'master_key_rotate':<36}{rate:>12.0f}{ratio:>10.2f}")
    print(
        "per round, keys/s (rotation / floor): "
        + ", ".join(
            f"{arguments.keys / r:.0f} / {arguments.keys / f:.0f}"
            for f, r in zip(floors, rotations, strict=True)
        )
    )
    figure = Figure(
        name=f"key rotation, {arguments.keys:,} data keys",
        unit="keys/s",
        patterm=rate,
        comparison=floor_rate,
        comparison_name="raw AES-GCM unwrap + wrap",
        goal=">= 0.3",  # issue 17
        paired_ratio=ratio,
    )
    if figure.met is False and arguments.profile_dir:
        next_version = arguments.rounds + 2
        master_keys[next_version] = crypto.generate_key()
        settings.PATTERM_MASTER_KEYS = ring_up_to(next_version)
        vacuum()
        profile_to(
            f"{arguments.profile_dir}/key-rotation.txt",
            lambda: master_key_rotate(batch_size=arguments.batch_size),
        )
    write_figures(arguments.json, "keys", [figure], sizes=sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
