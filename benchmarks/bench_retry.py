"""opskit.retry vs tenacity, stamina and backoff, in one process.

Prints ns per call for the success path (sync and async) and for a call that
fails twice then succeeds with waits disabled, and the ratios the retry issue
targets: opskit's success path >= 20x faster than tenacity, within 10x of a
bare call.
"""

from __future__ import annotations

from collections.abc import Callable

import backoff as backoff_lib
import stamina
import tenacity
from prometheus_client import CollectorRegistry

from _bench import REPEAT, abench, aok, bench, ok
from opskit.retry import Retry, backoff

N_SYNC = 200_000
N_ASYNC = 100_000
N_FLAKY = 5_000


def policy() -> Retry:
    return Retry("bench", on=ConnectionError, attempts=3, registry=CollectorRegistry(),
                 backoff=backoff.exponential())  # fmt: skip


def success_path() -> dict[str, tuple[float, float]]:
    p = policy()
    ten = tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential())
    sta = stamina.retry(on=ConnectionError, attempts=3)
    bo = backoff_lib.on_exception(backoff_lib.expo, ConnectionError, max_tries=3)
    return {
        "bare call": (bench(ok, N_SYNC), abench(aok, N_ASYNC)),
        "opskit Retry": (bench(p(ok), N_SYNC), abench(p(aok), N_ASYNC)),
        "tenacity @retry": (
            bench(ten(ok), N_SYNC // 10),
            abench(ten(aok), N_ASYNC // 10),
        ),
        "stamina.retry": (bench(sta(ok), N_SYNC // 10), abench(sta(aok), N_ASYNC // 10)),
        "backoff.on_exception": (
            bench(bo(ok), N_SYNC // 4),
            abench(bo(aok), N_ASYNC // 4),
        ),
    }


def flaky_factory() -> Callable[[], int]:
    state = {"n": 0}

    def flaky() -> int:
        state["n"] += 1
        if state["n"] % 3:
            raise ConnectionError("transient")
        return 1

    return flaky


def fail_twice_then_succeed() -> dict[str, float]:
    p = Retry("bench2", on=ConnectionError, attempts=3, registry=CollectorRegistry(),
              backoff=backoff.constant(0.0))  # fmt: skip
    ten = tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(),
                         retry=tenacity.retry_if_exception_type(ConnectionError))  # fmt: skip
    stamina.set_testing(True, attempts=3)
    sta = stamina.retry(on=ConnectionError, attempts=3)
    bo = backoff_lib.on_exception(backoff_lib.constant, ConnectionError, max_tries=3, interval=0,
                                  jitter=None)  # fmt: skip
    import logging

    logging.getLogger("backoff").disabled = True
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        return {
            "opskit Retry": bench(p(flaky_factory()), N_FLAKY),
            "tenacity @retry": bench(ten(flaky_factory()), N_FLAKY),
            "stamina.retry": bench(sta(flaky_factory()), N_FLAKY),
            "backoff.on_exception": bench(bo(flaky_factory()), N_FLAKY),
        }
    finally:
        stamina.set_testing(False)
        structlog.reset_defaults()


def main() -> None:
    print(f"opskit.retry benchmark (ns per call, best of {REPEAT} runs)")
    res = success_path()
    print("\nsuccess path (first attempt succeeds)")
    print(f"  {'':24} {'sync':>10} {'async':>10}")
    for name, (s, a) in res.items():
        print(f"  {name:24} {s:10.0f} {a:10.0f}")
    o_s, o_a = res["opskit Retry"]
    b_s, b_a = res["bare call"]
    print("\nratios (sync / async)")
    for peer in ("tenacity @retry", "stamina.retry", "backoff.on_exception"):
        ps, pa = res[peer]
        print(f"  {peer} / opskit: {ps / o_s:6.1f}x / {pa / o_a:6.1f}x faster")
    print(f"  opskit / bare call: {o_s / b_s:6.1f}x / {o_a / b_a:6.1f}x "
          "(target: <= 10x)")  # fmt: skip
    t_s, t_a = res["tenacity @retry"]
    print(f"  target opskit >= 20x faster than tenacity: sync {t_s / o_s:.1f}x, async "
          f"{t_a / o_a:.1f}x")  # fmt: skip
    flaky = fail_twice_then_succeed()
    print("\nfails twice then succeeds, waits disabled (ns per call)")
    for name, ns in flaky.items():
        print(f"  {name:24} {ns:10.0f}  ({ns / flaky['opskit Retry']:.2f}x opskit)")


if __name__ == "__main__":
    main()
