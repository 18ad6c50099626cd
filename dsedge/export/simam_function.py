"""Outline every SimAM subgraph of an exported model into one `dsedge::SimAM` node.

Why a post-export pass: torch's dynamo exporter inlines every model-local
function before it writes the model (DESIGN §5 "Findings"), so the function is
attached afterwards. Each exported node carries `pkg.torch.onnx.name_scopes` and
`pkg.torch.onnx.class_hierarchy` metadata (it survives the exporter's
optimizer); the nodes whose hierarchy passes through `dsedge.models.simam.SimAM`
are grouped by that module's scope, each group is checked to be one SimAM (one
data input, one output, only the expected elementwise/reduction ops), and it is
replaced by a single call of the model-local function

    dsedge::SimAM(X) -> Y   attribute: lambda (float)

whose body is standard ONNX ops, so ONNX Runtime and TensorRT run it without a
plugin, and a fused plugin of the same name can replace it later. The body
computes n = max(H*W - 1, 1) from `Shape(X)` (like `dsedge.models.simam.simam`)
and uses `CastLike` for its constants, so the same body is valid for float32,
float16 and bfloat16 inputs.

`inline_simam` is the inverse: it expands the calls back into plain ops (the
"flat" variant that OpenVINO needs).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, helper

from dsedge import SIMAM_LAMBDA
from dsedge.errors import ExportError

DOMAIN = "dsedge"
FUNCTION_NAME = "SimAM"
FUNCTION_VERSION = 1
MIN_OPSET = 15
SIMAM_CLASS = "dsedge.models.simam.SimAM"
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
CLASSES_KEY = "pkg.torch.onnx.class_hierarchy"

# Ops the exporter may emit for SimAM's arithmetic (after its own optimizer).
_ALLOWED_OPS = frozenset(
    {"ReduceMean", "ReduceSum", "Sub", "Pow", "Mul", "Div", "Add", "Sigmoid", "Cast",
     "CastLike", "Constant", "Max", "Clip", "Identity", "Reciprocal", "Sqrt"}
)
_REQUIRED_OPS = frozenset({"ReduceMean", "Sigmoid"})


@dataclass
class OutlineReport:
    """What `outline_simam` did: the number of calls and the nodes before/after."""

    calls: int = 0
    nodes_before: int = 0
    nodes_after: int = 0
    scopes: list[str] = field(default_factory=list)


def metadata_list(node: onnx.NodeProto, key: str) -> list[str] | None:
    """A list-valued node metadata entry (the exporter writes them as Python literals), or None."""
    for prop in node.metadata_props:
        if prop.key == key:
            try:
                value = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return [str(v) for v in value] if isinstance(value, (list, tuple)) else None
    return None


def simam_scope(node: onnx.NodeProto, simam_class: str = SIMAM_CLASS) -> str | None:
    """Name of the SimAM module (e.g. `layer1.0.simam1`) a node was exported from, if any."""
    scopes, classes = metadata_list(node, SCOPES_KEY), metadata_list(node, CLASSES_KEY)
    if not scopes or not classes or len(scopes) != len(classes):
        return None
    for scope, cls in zip(scopes, classes, strict=True):
        if cls == simam_class:
            return scope
    return None


def make_simam_function(opset: int, default_lambda: float = SIMAM_LAMBDA) -> onnx.FunctionProto:
    """The `dsedge::SimAM` function body (standard ops only; n from `Shape`); opset >= 15 (CastLike)."""
    if opset < MIN_OPSET:
        raise ExportError(f"the SimAM function needs opset >= {MIN_OPSET} (CastLike), got {opset}")
    f32 = TensorProto.FLOAT
    i64 = TensorProto.INT64

    def const(name: str, tensor: onnx.TensorProto) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=tensor)

    lam_attr = helper.make_attribute_ref("value_float", onnx.AttributeProto.FLOAT, ref_attr_name="lambda")
    lam_node = helper.make_node("Constant", [], ["lam_f"])
    lam_node.attribute.append(lam_attr)
    nodes = [
        const("axes_hw", helper.make_tensor("axes_hw", i64, [2], [2, 3])),
        const("start_hw", helper.make_tensor("start_hw", i64, [1], [2])),
        const("end_hw", helper.make_tensor("end_hw", i64, [1], [4])),
        const("one_i", helper.make_tensor("one_i", i64, [1], [1])),
        const("four_f", helper.make_tensor("four_f", f32, [], [4.0])),
        const("half_f", helper.make_tensor("half_f", f32, [], [0.5])),
        lam_node,
        # n = max(H*W - 1, 1), from the runtime shape
        helper.make_node("Shape", ["X"], ["shape"]),
        helper.make_node("Slice", ["shape", "start_hw", "end_hw"], ["hw"]),
        helper.make_node("ReduceProd", ["hw"], ["hw_prod"], keepdims=1),
        helper.make_node("Sub", ["hw_prod", "one_i"], ["n_raw"]),
        helper.make_node("Max", ["n_raw", "one_i"], ["n_i"]),
        helper.make_node("CastLike", ["n_i", "X"], ["n"]),
        helper.make_node("CastLike", ["lam_f", "X"], ["lam"]),
        helper.make_node("CastLike", ["four_f", "X"], ["four"]),
        helper.make_node("CastLike", ["half_f", "X"], ["half"]),
        # d = (x - mean)^2 ; v = sum(d) / n
        # ReduceMean takes its axes as an input from opset 18, as an attribute before
        helper.make_node("ReduceMean", ["X", "axes_hw"], ["mu"], keepdims=1) if opset >= 18
        else helper.make_node("ReduceMean", ["X"], ["mu"], keepdims=1, axes=[2, 3]),
        helper.make_node("Sub", ["X", "mu"], ["xc"]),
        helper.make_node("Mul", ["xc", "xc"], ["d"]),
        helper.make_node("ReduceSum", ["d", "axes_hw"], ["dsum"], keepdims=1),
        helper.make_node("Div", ["dsum", "n"], ["v"]),
        # e_inv = d / (4 (v + lambda)) + 0.5 ; y = x * sigmoid(e_inv)
        helper.make_node("Add", ["v", "lam"], ["v_lam"]),
        helper.make_node("Mul", ["v_lam", "four"], ["denom"]),
        helper.make_node("Div", ["d", "denom"], ["ratio"]),
        helper.make_node("Add", ["ratio", "half"], ["e_inv"]),
        helper.make_node("Sigmoid", ["e_inv"], ["gate"]),
        helper.make_node("Mul", ["X", "gate"], ["Y"]),
    ]
    fn = helper.make_function(
        DOMAIN,
        FUNCTION_NAME,
        inputs=["X"],
        outputs=["Y"],
        nodes=nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attribute_protos=[helper.make_attribute("lambda", float(default_lambda))],
        doc_string=(
            "SimAM attention (Yang et al. 2021): n = max(H*W-1, 1); d = (X - mean_hw X)^2; "
            "v = sum_hw d / n; Y = X * sigmoid(d / (4 (v + lambda)) + 0.5). Reductions in the "
            "input dtype; export keeps SimAM in float32 in low-precision artifacts."
        ),
    )
    return fn


def default_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset (the exporter may raise a requested opset, e.g. 17 -> 18)."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ExportError("exported model has no default-domain opset import")


def _group_by_simam_scope(graph: onnx.GraphProto, simam_class: str) -> dict[str, list[int]]:
    """Node indices of the main graph, grouped by the SimAM module they were exported from."""
    groups: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        scope = simam_scope(node, simam_class)
        if scope is not None:
            groups.setdefault(scope, []).append(i)
    return groups


def _check_every_module_found(groups: Mapping[str, list[int]], lambdas: Mapping[str, float]) -> None:
    """The scopes found in the graph must be exactly the torch model's SimAM modules.

    A mismatch means the exporter's metadata changed shape; outlining only some of
    them would write a half-fused model, so this raises instead.
    """
    missing = sorted(set(lambdas) - set(groups))
    unknown = sorted(set(groups) - set(lambdas))
    if missing or unknown:
        raise ExportError(
            f"SimAM outlining found scopes {sorted(groups)[:4]}... but the model has SimAM modules "
            f"{sorted(lambdas)[:4]}... (missing: {missing[:4]}, unexpected: {unknown[:4]})",
            "the torch exporter's metadata changed; export with --inline-simam or report a bug",
        )


@dataclass(frozen=True)
class _GraphWiring:
    """What a group's boundary is measured against: constants, graph outputs, who reads each tensor."""

    constants: set[str]
    graph_outputs: set[str]
    consumers: dict[str, set[int]]

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> _GraphWiring:
        constants = {init.name for init in graph.initializer}
        constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        consumers: dict[str, set[int]] = {}
        for i, node in enumerate(graph.node):
            for name in node.input:
                consumers.setdefault(name, set()).add(i)
        return cls(constants, {o.name for o in graph.output}, consumers)


def _simam_call(
    graph: onnx.GraphProto, scope: str, idx: list[int], lam: float, wiring: _GraphWiring
) -> tuple[int, onnx.NodeProto]:
    """The `dsedge::SimAM` call that replaces one group, and the index of the node it takes the place of.

    The group must be one SimAM: one data input, one output read outside the group,
    and only the ops SimAM's arithmetic exports to; anything else raises rather than
    fusing something that is not SimAM.
    """
    members = set(idx)
    ops = Counter(graph.node[i].op_type for i in idx)
    produced = {o for i in idx for o in graph.node[i].output}
    inputs = {
        name for i in idx for name in graph.node[i].input
        if name and name not in produced and name not in wiring.constants
    }
    outputs = [
        name for i in idx for name in graph.node[i].output
        if name in wiring.graph_outputs or wiring.consumers.get(name, set()) - members
    ]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(
            f"SimAM '{scope}' exported as a subgraph with inputs {sorted(inputs)} and outputs "
            f"{outputs}; expected exactly one of each"
        )
    if not set(ops) <= _ALLOWED_OPS or not _REQUIRED_OPS <= set(ops):
        raise ExportError(f"SimAM '{scope}' exported with unexpected ops {dict(ops)}")
    out_name = outputs[0]
    producer = next(i for i in idx if out_name in graph.node[i].output)
    call = helper.make_node(
        FUNCTION_NAME,
        [inputs.pop()],
        [out_name],
        name=f"/{scope}/SimAM",
        domain=DOMAIN,
    )
    call.attribute.append(helper.make_attribute("lambda", float(lam)))
    helper.set_metadata_props(call, {"dsedge.module": scope})  # the torch module it replaces
    return producer, call


def _splice(graph: onnx.GraphProto, replacement: Mapping[int, onnx.NodeProto], removed: set[int]) -> None:
    """Rewrite the node list: each call where its group's output was produced, the group gone.

    Putting the call at the producer's position keeps the list topologically sorted.
    """
    new_nodes = []
    for i, node in enumerate(graph.node):
        if i in replacement:
            new_nodes.append(replacement[i])
        elif i not in removed:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    _prune(graph)


def _attach_simam_function(model: onnx.ModelProto, default_lambda: float) -> None:
    """Declare the `dsedge` domain and add the function body once, so the calls resolve."""
    opset = default_opset(model)
    if not any(imp.domain == DOMAIN for imp in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, FUNCTION_VERSION))
    if not any(f.domain == DOMAIN and f.name == FUNCTION_NAME for f in model.functions):
        model.functions.append(make_simam_function(opset, default_lambda))


def outline_simam(
    model: onnx.ModelProto,
    lambdas: Mapping[str, float],
    simam_class: str = SIMAM_CLASS,
) -> OutlineReport:
    """Replace each SimAM subgraph of `model` (in place) by one `dsedge::SimAM` call.

    `lambdas` maps every SimAM module name of the source torch model (as in
    `named_modules()`) to its lambda; every one of them must be found and
    outlined, otherwise the exporter changed shape under us and this raises
    `ExportError` rather than writing a half-fused model. With no SimAM modules
    (the baselines) this is a no-op.
    """
    graph = model.graph
    report = OutlineReport(nodes_before=len(graph.node))
    if not lambdas:
        report.nodes_after = len(graph.node)
        return report

    groups = _group_by_simam_scope(graph, simam_class)
    _check_every_module_found(groups, lambdas)
    wiring = _GraphWiring.of(graph)
    replacement: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for scope in sorted(groups, key=lambda s: groups[s][0]):
        producer, call = _simam_call(graph, scope, groups[scope], lambdas[scope], wiring)
        replacement[producer] = call
        removed |= set(groups[scope])
        report.scopes.append(scope)
    _splice(graph, replacement, removed)
    _attach_simam_function(model, next(iter(lambdas.values())))
    report.calls = len(report.scopes)
    report.nodes_after = len(graph.node)
    return report


def _prune(graph: onnx.GraphProto) -> None:
    """Drop initializers, Constant nodes and value_info no longer used by any node."""
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Constant" and not set(n.output) & used]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    alive = used | {o for node in graph.node for o in node.output}
    vi = [v for v in graph.value_info if v.name in alive]
    del graph.value_info[:]
    graph.value_info.extend(vi)


def count_simam_calls(model: onnx.ModelProto) -> int:
    """Number of `dsedge::SimAM` call nodes in the main graph."""
    return sum(1 for n in model.graph.node if n.domain == DOMAIN and n.op_type == FUNCTION_NAME)


def inline_simam(model: onnx.ModelProto) -> onnx.ModelProto:
    """The flat variant: every `dsedge::SimAM` call expanded into standard ops (a new model)."""
    import onnx.inliner

    flat = onnx.inliner.inline_local_functions(model)
    keep = [imp for imp in flat.opset_import if imp.domain != DOMAIN]
    del flat.opset_import[:]
    flat.opset_import.extend(keep)
    return flat
