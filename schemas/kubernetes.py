"""The `kubeflow` section against Kubernetes' own rules, so that a mistake is a named config error when
the config is loaded or compiled, not a pod Kubernetes refuses at run time: CPU and memory quantities
(and sizes no node has), limits not below requests (per entry, and per task where a node id's or class's
entry is laid over `default`), node-selector labels, the accelerator's resource name, the service
account's name. No TensorFlow, no kfp: pure rules."""
import decimal
import re

MIN_MEMORY = 64 * 2 ** 20  # bytes: a task imports TensorFlow; less is a missing unit ('512' = 512 bytes)
MAX_MEMORY = 16 * 2 ** 40  # bytes (16 TiB): no node has more
MAX_CPU = 512  # cores
_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_CPU = re.compile(rf"^{_NUMBER}(m?)$")
# What Kubernetes and kfp's compiler (compiler_utils._memory_to_float) both read.
_MEMORY_UNITS = {"": 1, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
                 "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}
_MEMORY = re.compile(rf"^{_NUMBER}({'|'.join(u for u in _MEMORY_UNITS if u)})?$")
_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")  # a label name or value (<= 63)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")  # DNS-1123 (<= 253)
LIMITS = (("cpu", "cpu_limit"), ("memory", "memory_limit"))


def cpu(value):
    """Cores (a Decimal) of a CPU quantity; ValueError saying why it is none Kubernetes takes."""
    m = _CPU.match(str(value))
    if not isinstance(value, str) or not m:
        raise ValueError(f"{value!r} is not a Kubernetes CPU quantity: give cores ('2', '0.5') or millicores ('500m')")
    cores = decimal.Decimal(m.group(1)) / (1000 if m.group(2) else 1)
    if cores <= 0:
        raise ValueError(f"{value!r} is no CPU: give more than 0")
    if (cores * 1000) % 1:
        raise ValueError(f"{value!r} is finer than a millicore (1m), which Kubernetes refuses")
    if cores > MAX_CPU:
        raise ValueError(f"{value!r} is more than {MAX_CPU} cores: no node has that many")
    return cores


def memory(value):
    """Bytes (a Decimal) of a memory quantity; ValueError saying why it is none Kubernetes takes."""
    m = _MEMORY.match(str(value))
    if not isinstance(value, str) or not m:
        hint = " (there is no 'K' suffix: use 'Ki')" if str(value).endswith(("K", "k")) else ""
        raise ValueError(f"{value!r} is not a Kubernetes memory quantity: give a number of bytes with a unit, e.g. "
                         f"'512Mi', '8Gi', '2G'{hint}")
    size = decimal.Decimal(m.group(1)) * _MEMORY_UNITS[m.group(2) or ""]
    if size < MIN_MEMORY:
        raise ValueError(f"{value!r} is {size:,} bytes, less than 64Mi, too little for a task that imports "
                         "TensorFlow (a unit missing? '512Mi', not '512')")
    if size > MAX_MEMORY:
        raise ValueError(f"{value!r} is more than 16Ti: no node has that much")
    return size


def _label_problem(text, what):
    """Why `text` is no Kubernetes label key (what='key': [prefix/]name) or value; None if it is one."""
    prefix, _, name = text.rpartition("/") if what == "key" else ("", "", text)
    if what == "value" and not text:
        return None
    if len(name) > 63 or not _LABEL.match(name):
        return (f"{text!r} is not a Kubernetes label {what}: at most 63 letters, digits, '-', '_' or '.', beginning "
                f"and ending with a letter or digit" + (" (after an optional DNS prefix and '/')" if what == "key" else ""))
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"{text!r}: its prefix {prefix!r} is not a DNS-1123 subdomain (lower case, e.g. example.com)"
    return None


def _entry_problems(where, entry):
    problems = []
    for key, check in (("cpu", cpu), ("cpu_limit", cpu), ("memory", memory), ("memory_limit", memory)):
        if entry.get(key) is not None:
            try:
                check(entry[key])
            except ValueError as e:
                problems.append(f"{where}.{key}: {e}")
    kind = (entry.get("accelerator") or {}).get("type")
    if isinstance(kind, str):
        prefix, _, name = kind.rpartition("/")
        if not prefix or _label_problem(kind, "key") or prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io"):
            problems.append(f"{where}.accelerator.type: {kind!r} is not an extended resource Kubernetes schedules: give "
                            "its qualified name, e.g. nvidia.com/gpu or amd.com/gpu")
    for key, value in (entry.get("node_selector") or {}).items():
        why = _label_problem(key, "key") or (_label_problem(value, "value") if isinstance(value, str) else None)
        if why:
            problems.append(f"{where}.node_selector.{key}: {why}")
    return problems


def limit_problems(entry, source):
    """Limits below requests in a task's merged entry; `source(field)` names the entry each came from."""
    problems = []
    for request, limit in LIMITS:
        parse = cpu if request == "cpu" else memory
        try:
            low, high = parse(entry[request]), parse(entry[limit])
        except (KeyError, ValueError):  # unset, or named as a bad quantity already
            continue
        if high < low:
            problems.append(f"{source(limit)}.{limit}: {entry[limit]!r} is less than {request} {entry[request]!r}"
                            f"{'' if source(limit) == source(request) else ' (of ' + source(request) + ')'}: "
                            "Kubernetes refuses a pod whose limit is below its request")
    return problems


def problems(kubeflow):
    """Every `kubeflow` section mistake Kubernetes would refuse, each naming its field."""
    if not isinstance(kubeflow, dict):
        return []
    out = []
    resources = kubeflow.get("resources") or {}
    default = resources.get("default") if isinstance(resources.get("default"), dict) else {}
    for name, entry in resources.items():
        if not isinstance(entry, dict):
            continue
        where = f"kubeflow.resources.{name}"
        out += _entry_problems(where, entry)
        merged = {**default, **entry}  # what a task of this entry takes, at least
        out += limit_problems(merged, lambda f: where if f in entry else "kubeflow.resources.default")
    out = list(dict.fromkeys(out))  # a default's own mistake once, not once per entry laid over it
    account = kubeflow.get("service_account")
    if isinstance(account, str) and (len(account) > 253 or not _DNS_SUBDOMAIN.match(account)):
        out.append(f"kubeflow.service_account: {account!r} is not a Kubernetes name: lower-case letters, digits, '-' "
                   "and '.', beginning and ending with a letter or digit (DNS-1123)")
    return out
