"""Exit 0 when the PostgreSQL server at the given URL accepts a connection, 1 otherwise.

Used by `make test` to decide whether the PostgreSQL run can happen.
"""

import sys

import psycopg


def main(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return 0
    except psycopg.Error:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
