"""Code and command line every new ipykernel starts with."""

# Run silently in each new kernel: rich formats as E2B's kernels give them (dicts and lists as
# application/json, DataFrames as e2b/data), and the helpers that set per-run env vars and undo them.
KERNEL_BOOT = r'''
def _sandstorm_boot():
    import json, math, os, sys, types
    from IPython.core.formatters import BaseFormatter, JSONFormatter
    from traitlets import ObjectName, Unicode

    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    def plain(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "isoformat"):
            return o.isoformat()
        raise TypeError(type(o).__name__)

    class DictJSONFormatter(JSONFormatter):
        def __call__(self, obj):
            if isinstance(obj, (dict, list)):
                try:
                    return finite(json.loads(json.dumps(obj, default=plain)))
                except (TypeError, ValueError):
                    return None
            return super().__call__(obj)

    class DataFrameFormatter(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")
        _return_type = (dict, str)

        def __call__(self, obj):
            pandas = sys.modules.get("pandas")
            if pandas is None or not isinstance(obj, pandas.DataFrame):
                return super().__call__(obj)
            columns = obj.to_dict(orient="list")
            out = {}
            for key, values in columns.items():
                out[str(key)] = [v.isoformat() if isinstance(v, pandas.Timestamp) else v for v in values]
            try:
                return finite(json.loads(json.dumps(out, default=plain)))
            except (TypeError, ValueError):
                return None

    ip = get_ipython()
    formatters = ip.display_formatter.formatters
    formatters["application/json"] = DictJSONFormatter(parent=ip.display_formatter)
    formatters["e2b/data"] = DataFrameFormatter(parent=ip.display_formatter)

    saved = []
    def push_env(env):
        saved.append({k: os.environ.get(k) for k in env})
        os.environ.update(env)
    def pop_env():
        for k, v in (saved.pop() if saved else {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    helpers = types.ModuleType("_sandstorm_ci")
    helpers.push_env, helpers.pop_env = push_env, pop_env
    sys.modules["_sandstorm_ci"] = helpers

_sandstorm_boot()
del _sandstorm_boot
'''

# Command-line config of each kernel: no colour codes in tracebacks, whole collections in text/plain
# (as E2B's kernels), history in memory only.
KERNEL_ARGS = [
    "--InteractiveShell.colors=NoColor",
    "--PlainTextFormatter.max_seq_length=0",
    "--HistoryManager.hist_file=:memory:",
]
