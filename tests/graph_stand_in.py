"""The CUDA graph's contract on a CPU, for the tests: the scripts' `as_cuda_graph` captures with `capture` below when
FREELUNCH_GRAPH_STAND_IN names this module (tests/test_graphs.py sets it). The capture runs `fn` once as make_fx traces
it (the capture and its first replay in one), its Python values frozen in the trace and a host sync failing as in a
capture (though what ran before it stays done); each later replay runs that trace on the captured inputs and copies
its results into the same output tensors, which every call returns and the next one overwrites."""
import torch
from torch.fx.experimental.proxy_tensor import make_fx


def capture(fn, inputs: list, spec) -> tuple:
    """`fn` captured on the argument leaves `inputs` (tensors and constants; `spec` their structure) and run once: a
    function that replays it and returns its output tensors, and those tensors (as the scripts' CUDA capture)."""
    ran = []

    def of_tensors(*tensors):  # the constants frozen into the trace, as a capture freezes them
        given = iter(tensors)
        leaves = [next(given) if isinstance(x, torch.Tensor) else x for x in inputs]
        ran.append(fn(*torch.utils._pytree.tree_unflatten(leaves, spec)))
        return ran[-1]

    tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
    trace, (outputs,) = make_fx(of_tensors)(*tensors), ran

    def replay():
        with torch.no_grad():
            results = trace(*tensors)
        for output, result in zip(*(torch.utils._pytree.tree_leaves(x) for x in (outputs, results)), strict=True):
            if isinstance(output, torch.Tensor):
                output.copy_(result)
        return outputs
    return replay, outputs
