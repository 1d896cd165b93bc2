"""Master key rotation on PostgreSQL, against raw AES-GCM unwrap and wrap in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/keys.py
    ... bench/keys.py --keys 50000 --batch-size 1000
    ... bench/keys.py --quick

Builds a throwaway database `bench_keys` with --keys patient data keys wrapped under master key
version 1, adds version 2, and times `vault.services.master_key_rotate` (what
`rotate_master_key` runs: batches with row locks, unwrap, wrap, bulk update, one audit row per
batch) against the floor: the same wrapped keys, already in memory, unwrapped and wrapped again
with `cryptography`'s AESGCM and nothing else. Afterwards every key is checked to be on
version 2 and to open.
"""

import argparse
import base64
import os
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
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="500 keys")
    parser.add_argument("--profile-dir", help="write pyinstrument reports of missed goals here")
    add_output_arguments(parser)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.keys = 500
    sizes = {"data keys": arguments.keys, "batch size": arguments.batch_size}
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
    old, new = crypto.generate_key(), crypto.generate_key()

    def ring(*versions: tuple[int, bytes]) -> str:
        return ",".join(f"{v}:{base64.b64encode(k).decode()}" for v, k in versions)

    def prepare() -> None:
        settings.PATTERM_MASTER_KEYS = ring((1, old))
        PatientKey.objects.all().delete()
        patients = list(User.objects.values_list("pk", flat=True))
        batch = []
        for patient_id in patients:
            version, wrapped = keys.wrap(patient_id=patient_id, key=crypto.generate_key())
            batch.append(
                PatientKey(patient_id=patient_id, master_key_version=version, wrapped_key=wrapped)
            )
        PatientKey.objects.bulk_create(batch, batch_size=2000)
        settings.PATTERM_MASTER_KEYS = ring((2, new), (1, old))

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_user (password, email, role, first_name, last_name, is_active,"
            " is_staff, is_superuser, date_joined) SELECT '!', 'k' || n || '@bench.de', "
            "'patient', 'K', 'N' || n, true, false, false, now() "
            "FROM generate_series(1, %s) AS n",
            [arguments.keys],
        )
    prepare()

    # The floor: the same wrapped keys in memory, raw AES-GCM with the same associated data.
    wrapped = list(PatientKey.objects.values_list("patient_id", "wrapped_key"))
    old_aead, new_aead = AESGCM(old), AESGCM(new)
    started = time.perf_counter()
    for patient_id, sealed in wrapped:
        sealed = bytes(sealed)
        plain = old_aead.decrypt(
            sealed[:12],
            sealed[12:],
            f"patterm:patient-key:v1|patient={patient_id}|master=1".encode(),
        )
        nonce = os.urandom(12)
        new_aead.encrypt(
            nonce, plain, f"patterm:patient-key:v1|patient={patient_id}|master=2".encode()
        )
    floor_seconds = time.perf_counter() - started

    started = time.perf_counter()
    result = master_key_rotate(batch_size=arguments.batch_size)
    rotate_seconds = time.perf_counter() - started
    if result.rewrapped != arguments.keys:
        raise SystemExit(f"re-wrapped {result.rewrapped} of {arguments.keys} keys")
    if PatientKey.objects.exclude(master_key_version=2).exists():
        raise SystemExit("keys left on the old master key")
    for patient_key in PatientKey.objects.order_by("?")[:50]:
        keys.unwrap(patient_key)  # raises when a re-wrapped key does not open

    rate, floor_rate = arguments.keys / rotate_seconds, arguments.keys / floor_seconds
    print(f"\nRe-wrapping {arguments.keys:,} data keys, batches of {arguments.batch_size}:")
    print(f"{'':<36}{'keys/s':>12}{'x floor':>10}")
    print(f"{'raw AES-GCM unwrap + wrap (floor)':<36}{floor_rate:>12.0f}{1:>10.2f}")
    print(f"{'master_key_rotate':<36}{rate:>12.0f}{rate / floor_rate:>10.2f}")
    figure = Figure(
        name=f"key rotation, {arguments.keys:,} data keys",
        unit="keys/s",
        patterm=rate,
        comparison=floor_rate,
        comparison_name="raw AES-GCM unwrap + wrap",
        goal=">= 0.3",  # issue 17
    )
    if figure.met is False and arguments.profile_dir:
        prepare()
        profile_to(
            f"{arguments.profile_dir}/key-rotation.txt",
            lambda: master_key_rotate(batch_size=arguments.batch_size),
        )
    write_figures(arguments.json, "keys", [figure], sizes=sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
