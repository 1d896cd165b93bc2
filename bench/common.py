"""What the benchmarks share: a throwaway PostgreSQL database and timed threads."""

import threading
import time


def recreate_database(url: str, name: str) -> str:
    """Drop and create database `name` on the server of `url`; returns its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=3) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


def run_threads(count: int, work) -> float:
    """Seconds for `count` threads to run `work(number)`, all released at once.

    Each thread closes its Django connection; the first error of any thread is raised.
    """
    barrier = threading.Barrier(count + 1)
    errors = []

    def worker(number):
        from django.db import connection

        try:
            barrier.wait()
            work(number)
        except Exception as error:  # re-raised below: a failed run has no figure
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started
