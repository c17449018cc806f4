"""A stand-in for Hugging Face's `spaces` package (ZeroGPU's client), which works only on a Space.

It honours the part of the interface the studio uses, `spaces.GPU(duration=int | callable)` as a
decorator, and what ZeroGPU means for its callers: the duration is asked with the call's own
arguments, and the arguments and the result cross a process boundary, so both must pickle (they
are pickled and unpickled here). The call itself runs in this process. `calls` records the
(function name, duration asked) of every call.
"""

import pickle

calls: list[tuple[str, int]] = []


def GPU(fn=None, *, duration=60):  # noqa: N802 (the real package's name)
    def decorate(func):
        def wrapper(*args, **kwargs):
            asked = duration(*args, **kwargs) if callable(duration) else duration
            calls.append((func.__name__, asked))
            args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
            return pickle.loads(pickle.dumps(func(*args, **kwargs)))

        wrapper.zerogpu = True
        return wrapper

    return decorate(fn) if fn is not None else decorate
