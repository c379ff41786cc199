"""Arclight's torch executor: serves one TorchScript file or Lightning checkpoint to the Node.js runtime.

Started by lib/runtime/torch-executor.ts as a subprocess; standard library and torch only. It speaks a framed
binary protocol over its stdin and the stdout it had at start (the one lib/runtime/torch-protocol.ts speaks):

    frame   = u32 length (LE) | payload        payload = u8 kind | body     (length counts the payload)
    tensors = u16 count | per tensor: u16 name length | name (UTF-8) | u8 dtype | u8 rank | rank x i64 dims
              | u64 byte length | pad to 8 | raw little-endian bytes | pad to 8  (padding from the payload's start)

Kinds: HELLO (after torch imported), LOAD (JSON options) -> READY (JSON metadata), RUN (u32 id | tensors | u16
count | output names) -> RESULT (u32 id | tensors) or ERROR (u32 id | JSON {kind, message, hint}), BYE.
Tensor data never travels as JSON. Anything the model or its module prints goes to stderr, never into the channel.
"""
import importlib.util
import inspect
import json
import os
import struct
import sys
import time
import traceback

HELLO, LOAD, READY, RUN, RESULT, ERROR, BYE = 1, 2, 3, 4, 5, 6, 7
DTYPE_CODES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]
DATATYPE_OF = {"bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "int32": "INT32",
               "int64": "INT64", "float16": "FP16", "float32": "FP32", "float64": "FP64"}


class ExecutorError(Exception):
    """A failure told to Node as a typed message: 'input' (the request's fault), 'model', 'load', 'no_torch'."""

    def __init__(self, kind, message, hint=None):
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


class Channel:
    """Frames over two binary files; reads whole frames into fresh buffers so tensors can view them without copies."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    def read_exact(self, n):
        buffer = bytearray(n)
        view, got = memoryview(buffer), 0
        while got < n:
            read = self.reader.readinto(view[got:])
            if not read:
                return None
            got += read
        return buffer

    def receive(self):
        header = self.read_exact(4)
        if header is None:
            return None, None
        (length,) = struct.unpack("<I", header)
        payload = self.read_exact(length)
        if payload is None:
            return None, None
        # The kind byte stays at offset 0: tensor data is aligned to 8 from the payload's start.
        return payload[0], memoryview(payload)

    def send(self, kind, *parts):
        body = b"".join(parts)  # one copy: a frame goes out in two writes, never interleaved with another
        self.writer.write(struct.pack("<IB", len(body) + 1, kind))
        self.writer.write(body)
        self.writer.flush()

    def send_json(self, kind, value, prefix=b""):
        self.send(kind, prefix, json.dumps(value).encode())


def pad8(n):
    return (8 - n % 8) % 8


def decode_tensors(torch, body, offset):
    dtypes = torch_dtypes(torch)
    (count,) = struct.unpack_from("<H", body, offset)
    offset += 2
    tensors = []
    for _ in range(count):
        (name_length,) = struct.unpack_from("<H", body, offset)
        offset += 2
        name = bytes(body[offset:offset + name_length]).decode()
        offset += name_length
        code, rank = struct.unpack_from("<BB", body, offset)
        offset += 2
        dims = list(struct.unpack_from("<%dq" % rank, body, offset))
        offset += 8 * rank
        (size,) = struct.unpack_from("<Q", body, offset)
        offset += 8
        offset += pad8(offset)
        dtype = dtypes[DTYPE_CODES[code]]
        data = body[offset:offset + size]
        offset += size + pad8(size)
        if size == 0:
            tensor = torch.empty(dims, dtype=dtype)
        else:
            tensor = torch.frombuffer(data, dtype=dtype).reshape(dims)
        tensors.append((name, tensor))
    return tensors, offset


def encode_tensors(torch, named, start):
    """The tensors block, for a payload where it begins at `start` (padding counts from the payload's start)."""
    import ctypes

    parts = [struct.pack("<H", len(named))]
    offset = start + 2
    for name, tensor in named:
        tensor = tensor.detach()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        kind = dtype_name(torch, tensor.dtype)
        if kind is None:
            raise ExecutorError("model", "output '%s' has dtype %s, which Arclight cannot serve" % (name, tensor.dtype))
        tensor = tensor.to("cpu").contiguous()
        encoded = name.encode()
        size = tensor.numel() * tensor.element_size()
        head = struct.pack("<H", len(encoded)) + encoded + struct.pack("<BB", DTYPE_CODES.index(kind), tensor.dim())
        head += struct.pack("<%dq" % tensor.dim(), *tensor.shape) + struct.pack("<Q", size)
        head += b"\0" * pad8(offset + len(head))
        data = ctypes.string_at(tensor.data_ptr(), size) if size else b""
        parts += [head, data, b"\0" * pad8(size)]
        offset += len(head) + size + pad8(size)
    return b"".join(parts)


def torch_dtypes(torch):
    return {"bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16,
            "int32": torch.int32, "int64": torch.int64, "float16": torch.float16, "float32": torch.float32,
            "float64": torch.float64}


def dtype_name(torch, dtype):
    for name, value in torch_dtypes(torch).items():
        if value == dtype:
            return name
    return None


def choose_device(torch, providers):
    """cuda when it is listed and torch sees a GPU; cpu when listed; the same fallback rules as onnxruntime."""
    if "cuda" in providers:
        if torch.cuda.is_available():
            return "cuda", None
        reason = "torch.cuda.is_available() is false (torch %s, built for CUDA %s)" % (torch.__version__,
                                                                                        torch.version.cuda)
        if "cpu" in providers:
            return "cpu", reason
        raise ExecutorError("load", "CUDA was asked for alone and cannot be used: " + reason,
                            "Run on a GPU instance with a CUDA build of torch, or add cpu to ARCLIGHT_EXECUTION_PROVIDERS")
    if "cpu" in providers:
        return "cpu", None
    raise ExecutorError("load", "the torch executor runs on cuda or cpu; the execution providers list neither (%s)"
                        % ",".join(providers), "Set ARCLIGHT_EXECUTION_PROVIDERS to cuda,cpu or cpu")


def load_torchscript(torch, path, device):
    try:
        model = torch.jit.load(path, map_location=device)
    except Exception as error:
        raise ExecutorError("load", "model %s is not a TorchScript file torch %s can load: %s"
                            % (path, torch.__version__, first_line(error)),
                            "Export it with LightningModule.to_torchscript() and torch.jit.save") from error
    names = [a.name for a in model.forward.schema.arguments[1:]]
    returns = model.forward.schema.returns
    outputs = None
    if len(returns) == 1 and str(returns[0].type) == "Tensor":
        outputs = ["output"]
    return model, names, outputs


def import_class(path, class_name):
    if not os.path.isfile(path):
        raise ExecutorError("load", "module file %s does not exist" % path, "Check the module path")
    name = "arclight_user_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise ExecutorError("load", "module %s failed to import: %s" % (path, first_line(error)),
                            "Fix the module file; it must import with torch alone (Lightning optional)") from error
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ExecutorError("load", "module %s has no class %s" % (path, class_name), "Check the class name")
    return cls


def lightning_module_class():
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name).LightningModule
        except ImportError:
            continue
    return None


def torch_load(torch, path):
    """weights_only first (no code runs while unpickling); a Lightning checkpoint often needs the full unpickler."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:
        return torch.load(path, map_location="cpu")
    except Exception:
        return torch.load(path, map_location="cpu", weights_only=False)


def load_checkpoint(torch, path, module_path, class_name, device):
    if not module_path or not class_name:
        raise ExecutorError("load", "a Lightning checkpoint needs the Python module file and class that define the model",
                            "Give module and className (--module and --class)")
    cls = import_class(module_path, class_name)
    lightning = lightning_module_class()
    if lightning is not None and isinstance(cls, type) and issubclass(cls, lightning):
        model = cls.load_from_checkpoint(path, map_location=device)
    else:
        try:
            checkpoint = torch_load(torch, path)
        except Exception as error:
            raise ExecutorError("load", "checkpoint %s cannot be read by torch %s: %s"
                                % (path, torch.__version__, first_line(error)),
                                "Save it with trainer.save_checkpoint or torch.save(model.state_dict())") from error
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ExecutorError("load", "checkpoint %s holds no state_dict" % path,
                                "Save it with trainer.save_checkpoint or torch.save(model.state_dict())")
        params = checkpoint.get("hyper_parameters") or {}
        try:
            model = cls(**dict(params))
        except Exception as error:
            raise ExecutorError("load", "%s(%s) failed: %s" % (class_name, ", ".join(map(str, params)),
                                                                 first_line(error))) from error
        check_keys(model, state, path, class_name)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ExecutorError("load", "checkpoint %s does not fit %s: %s" % (path, class_name, " ".join(
                line.strip() for line in str(error).splitlines() if line.strip())),
                                "Name the class the checkpoint was trained with") from error
        model.to(device)
    model.eval()
    names = forward_argument_names(model)
    return model, names, None


def check_keys(model, state, path, class_name):
    """One error naming every missing and unexpected key, rather than torch's first complaint."""
    expected, found = set(model.state_dict().keys()), set(state.keys())
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append("missing keys: " + ", ".join(missing))
    if unexpected:
        parts.append("unexpected keys: " + ", ".join(unexpected))
    raise ExecutorError("load", "checkpoint %s does not match class %s; %s" % (path, class_name, "; ".join(parts)),
                        "Name the class the checkpoint was trained with (its layers must have the same names)")


def forward_argument_names(model):
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return ["input"]
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names or ["input"]


def first_line(error):
    """The line that says what went wrong: TorchScript puts it last, after the interpreter's traceback."""
    lines = [line.strip() for line in (str(error).strip() or type(error).__name__).splitlines() if line.strip()]
    if lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        for line in reversed(lines):
            if line.startswith("RuntimeError: "):
                return line[len("RuntimeError: "):]
    return lines[0]


class Served:
    """The loaded model, its input order and declared metadata."""

    def __init__(self, torch, model, device, input_names, output_names, declared_inputs, declared_outputs):
        self.torch, self.model, self.device = torch, model, device
        self.declared_inputs = declared_inputs or None
        self.input_names = [d["name"] for d in declared_inputs] if declared_inputs else input_names
        self.declared_outputs = [d["name"] for d in declared_outputs] if declared_outputs else None
        self.output_names = self.declared_outputs or output_names

    def run(self, named, wanted):
        feeds = dict(named)
        unknown = [n for n in feeds if n not in self.input_names]
        if unknown:
            raise ExecutorError("input", "unknown input '%s'; the model takes %s"
                                % (unknown[0], ", ".join("'%s'" % n for n in self.input_names)))
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ExecutorError("input", "missing input '%s'" % missing[0])
        self.check_declared(feeds)
        args = [feeds[n].to(self.device) for n in self.input_names]
        try:
            with self.torch.inference_mode():
                result = self.model(*args)
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            described = ", ".join("'%s' (%s %s)" % (n, DATATYPE_OF.get(dtype_name(self.torch, feeds[n].dtype)),
                                                   list(feeds[n].shape)) for n in self.input_names)
            raise ExecutorError("input", "input%s %s: %s" % ("s" if len(self.input_names) > 1 else "", described,
                                                             first_line(error))) from error
        outputs = self.name_outputs(result)
        if wanted:
            by_name = dict(outputs)
            absent = [w for w in wanted if w not in by_name]
            if absent:
                raise ExecutorError("input", "unknown output '%s'; the model gives %s"
                                    % (absent[0], ", ".join("'%s'" % n for n, _ in outputs)))
            outputs = [(w, by_name[w]) for w in wanted]
        return outputs

    def check_declared(self, feeds):
        if not self.declared_inputs:
            return
        for declared in self.declared_inputs:
            tensor = feeds[declared["name"]]
            got = DATATYPE_OF.get(dtype_name(self.torch, tensor.dtype))
            where = "input '%s'" % declared["name"]
            if got != declared["datatype"]:
                raise ExecutorError("input", "%s: datatype %s does not match the declared %s"
                                    % (where, got, declared["datatype"]))
            shape = declared["shape"]
            if len(shape) != tensor.dim() or any(d >= 0 and d != s for d, s in zip(shape, tensor.shape)):
                raise ExecutorError("input", "%s: shape %s does not fit the declared %s"
                                    % (where, list(tensor.shape), shape))

    def name_outputs(self, result):
        torch = self.torch
        if isinstance(result, torch.Tensor):
            values = [result]
        elif isinstance(result, dict):
            values = list(result.values())
            if not self.declared_outputs:
                return [(str(k), v) for k, v in result.items()]
        elif isinstance(result, (tuple, list)):
            values = list(result)
        else:
            raise ExecutorError("model", "the model returned %s; Arclight serves tensors, tuples, lists and dicts of "
                                         "tensors" % type(result).__name__)
        if not all(isinstance(v, torch.Tensor) for v in values):
            raise ExecutorError("model", "the model returned something other than tensors")
        names = self.output_names if self.output_names and len(self.output_names) == len(values) else (
            ["output"] if len(values) == 1 else ["output%d" % i for i in range(len(values))])
        return list(zip(names, values))

    def warm_up(self):
        """A run on zeros (dynamic dimensions as 1) when the inputs are declared; gives the outputs' metadata."""
        if not self.declared_inputs:
            return None, None
        dtypes = torch_dtypes(self.torch)
        feeds = []
        for d in self.declared_inputs:
            kind = next(k for k, v in DATATYPE_OF.items() if v == d["datatype"])
            feeds.append((d["name"], self.torch.zeros([s if s >= 0 else 1 for s in d["shape"]], dtype=dtypes[kind])))
        started = time.perf_counter()
        try:
            outputs = self.run(feeds, None)
        except ExecutorError as error:
            print("arclight torch executor: warm-up run failed: " + error.message, file=sys.stderr)
            return None, None
        elapsed = (time.perf_counter() - started) * 1000
        batched = all(len(d["shape"]) > 0 and d["shape"][0] < 0 for d in self.declared_inputs)
        fixed = all(all(s >= 0 for s in d["shape"][1:]) for d in self.declared_inputs)
        infos = []
        for name, tensor in outputs:
            shape = list(tensor.shape)
            if batched and shape:
                shape[0] = -1
            if not fixed:
                shape = [shape[0]] + [-1] * (len(shape) - 1) if shape else shape
            infos.append({"name": name, "datatype": DATATYPE_OF.get(dtype_name(self.torch, tensor.dtype), "FP32"),
                          "shape": shape})
        return elapsed, infos


def load(torch, options):
    device, fallback = choose_device(torch, options.get("executionProviders") or ["cpu"])
    threads = options.get("intraOpThreads")
    if threads:
        torch.set_num_threads(int(threads))
    path, fmt = options["path"], options["format"]
    if fmt == "torchscript":
        model, names, outputs = load_torchscript(torch, path, device)
    elif fmt == "lightning-checkpoint":
        model, names, outputs = load_checkpoint(torch, path, options.get("module"), options.get("className"), device)
    else:
        raise ExecutorError("load", "the torch executor serves torchscript and lightning-checkpoint, not %s" % fmt)
    served = Served(torch, model, device, names, outputs, options.get("inputs"), options.get("outputs"))
    first_run_ms, output_infos = served.warm_up() if options.get("warmUp", True) else (None, None)
    if output_infos is None:
        declared = options.get("outputs")
        output_infos = declared or [{"name": n, "datatype": "FP32", "shape": [], "asSent": True}
                                    for n in (served.output_names or ["output"])]
    input_infos = options.get("inputs") or [{"name": n, "datatype": "FP32", "shape": [], "asSent": True}
                                            for n in served.input_names]
    return served, {"inputs": input_infos, "outputs": output_infos, "device": device, "fallback": fallback,
                    "firstRunMs": first_run_ms, "torch": torch.__version__}


def serve(channel):
    try:
        import torch
    except Exception as error:
        channel.send_json(ERROR, {"kind": "no_torch", "message": "%s cannot import torch: %s"
                                  % (sys.executable, first_line(error))}, struct.pack("<I", 0))
        return 3
    torch.set_num_interop_threads(1)
    channel.send_json(HELLO, {"torch": torch.__version__, "python": sys.version.split()[0],
                              "cuda": torch.cuda.is_available()})
    served = None
    while True:
        kind, body = channel.receive()
        if kind is None or kind == BYE:
            return 0
        if kind == LOAD:
            try:
                served, metadata = load(torch, json.loads(bytes(body[1:])))
                channel.send_json(READY, metadata)
            except ExecutorError as error:
                channel.send_json(ERROR, {"kind": error.kind, "message": error.message, "hint": error.hint},
                                  struct.pack("<I", 0))
            except Exception as error:
                traceback.print_exc()
                channel.send_json(ERROR, {"kind": "load", "message": "loading failed: " + first_line(error)},
                                  struct.pack("<I", 0))
        elif kind == RUN:
            (request_id,) = struct.unpack_from("<I", body, 1)
            try:
                if served is None:
                    raise ExecutorError("model", "no model is loaded")
                named, offset = decode_tensors(torch, body, 5)
                (count,) = struct.unpack_from("<H", body, offset)
                offset += 2
                wanted = []
                for _ in range(count):
                    (length,) = struct.unpack_from("<H", body, offset)
                    wanted.append(bytes(body[offset + 2:offset + 2 + length]).decode())
                    offset += 2 + length
                outputs = served.run(named, wanted)
                channel.send(RESULT, struct.pack("<I", request_id), encode_tensors(torch, outputs, 5))
            except ExecutorError as error:
                channel.send_json(ERROR, {"kind": error.kind, "message": error.message}, struct.pack("<I", request_id))
            except Exception as error:
                traceback.print_exc()
                channel.send_json(ERROR, {"kind": "model", "message": first_line(error)},
                                  struct.pack("<I", request_id))


F_SETPIPE_SZ = 1031


def widen_pipes(*fds):
    """Pipes of 1 MiB (Linux's default cap) instead of 64 KiB: a large tensor crosses in one write, not in many
    wake-ups of both processes."""
    try:
        import fcntl
    except ImportError:
        return
    for fd in fds:
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass


def main():
    # The channel is the stdout this process started with; fd 1 then points at stderr, so a print() in the model's
    # module cannot corrupt a frame.
    widen_pipes(0, 1)
    writer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(Channel(sys.stdin.buffer, writer))


if __name__ == "__main__":
    sys.exit(main())
