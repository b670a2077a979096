"""Trigger conditions of a compiled package (a TFX conditional: `with Cond(...)`), evaluated as KFP's
driver does before it starts a task."""
import re

from collabopt.kubeflow import KfpError


# TFX compiles conditionals to this CEL subset (compiler_utils.placeholder_to_cel): artifact metadata,
# uri, parameter values, literals, == < > ! && || +. Translated token by token to Python, nothing else.
_CEL_TOKEN = re.compile(r"\s*(?:(?P<str>'[^']*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\].+-])"
                        r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))")
_CEL_NAMES = {"inputs", "artifacts", "metadata", "uri", "parameter_values", "true", "false"}


class _Obj(dict):
    __getattr__ = dict.__getitem__


def evaluate(expr, inputs):
    """The truth of trigger condition `expr` given a task's executor inputs ({"artifacts", "parameterValues"})."""
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        m = _CEL_TOKEN.match(expr, pos)
        if not m:
            raise KfpError(f"trigger condition {expr!r}: cannot read it at {expr[pos:]!r}")
        pos = m.end()
        tok = m.group(m.lastgroup)
        if m.lastgroup == "name" and tok not in _CEL_NAMES:
            raise KfpError(f"trigger condition {expr!r}: unsupported name {tok!r}")
        out.append({"&&": " and ", "||": " or ", "!": " not ", "true": "True", "false": "False"}.get(tok, tok))
    arts = _Obj({k: _Obj(artifacts=[_Obj(metadata=a.get("metadata", {}), uri=a["uri"]) for a in v["artifacts"]])
                 for k, v in inputs["artifacts"].items()})
    scope = {"inputs": _Obj(artifacts=arts, parameter_values=_Obj(inputs["parameterValues"]))}
    try:
        return bool(eval("".join(out), {"__builtins__": {}}, scope))  # noqa: S307 - whitelisted tokens only
    except (KeyError, IndexError, TypeError) as e:
        raise KfpError(f"trigger condition {expr!r} cannot be evaluated: {e!r}") from e
