using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using TorchSharp;

namespace CondenseCluster.Shared.Runtime;

/// <summary>Device and thread settings shared by every command that runs tensors.</summary>
public static partial class TorchRuntime
{
    /// <summary>
    /// What every program does before any tensor exists: keep freed tensor memory in the heap (<see cref="NativeAllocator"/>),
    /// libtorch's OpenMP threads' spin short, and its C++ log to errors. Returns the allocator setting, for the summaries that
    /// quote it.
    /// </summary>
    public static string PrepareProcess()
    {
        string allocator = NativeAllocator.Configure();
        ShortenOpenMpSpin();
        QuietNativeLog(); // last: it loads libtorch's c10, after the variables read at load time are set
        return allocator;
    }

    /// <summary>
    /// After each parallel operation libtorch's OpenMP threads spin before they sleep: libgomp's default of 300,000
    /// rounds lasts milliseconds on these CPUs, and takes the core that the threads of our own CPU kernels
    /// (<see cref="Model.BatchNormReluKernel"/>) need next; measured, BN → ReLU over CondenseNet-86's shapes took as
    /// long on two threads as on one. 10,000 rounds still bridges the gap between two libtorch operations, so they keep
    /// their speed. Left alone if the user set either variable.
    /// </summary>
    static void ShortenOpenMpSpin()
    {
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null) return;
        SetNativeDefault("GOMP_SPINCOUNT", "10000");
    }

    /// <summary>
    /// libtorch logs a warning for every convolution whose NNPACK path this CPU lacks ("Unsupported hardware", on CPUs
    /// without AVX2), which buries a worker's output; keep its C++ log to errors unless the user set TORCH_CPP_LOG_LEVEL.
    /// libtorch reads that variable only in c10::initLogging(), which PyTorch's Python module calls on import and
    /// TorchSharp never does (measured: the level stayed WARNING with the variable set), so it is set through the C
    /// library (libtorch reads the process environment, not .NET's copy of it) and then read by calling initLogging.
    /// That loads c10 (1 MB) from TorchSharp's native folder now; libtorch, loaded later, links to this same copy.
    /// </summary>
    static void QuietNativeLog()
    {
        SetNativeDefault("TORCH_CPP_LOG_LEVEL", "ERROR");
        if (!OperatingSystem.IsLinux()) return;
        try { InitLogging(); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { } // not this libtorch: keep its default
    }

    [DllImport("c10", EntryPoint = "_ZN3c1011initLoggingEv")] // c10::initLogging()
    private static extern void InitLogging();

    /// <summary>Sets a variable in the C library's environment unless it is set already.</summary>
    static void SetNativeDefault(string name, string value)
    {
        if (!OperatingSystem.IsLinux()) return;
        try { setenv(name, value, overwrite: 0); }
        catch (EntryPointNotFoundException) { } // not glibc: keep libtorch's default
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int setenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    /// <summary>Parses cpu, cuda or cuda:N and checks that this build and machine can use it.</summary>
    public static torch.Device ParseDevice(string text)
    {
        var match = DevicePattern().Match(text);
        if (!match.Success) throw new ArgumentException($"unknown device '{text}'; use cpu, cuda or cuda:N");
        if (match.Groups["kind"].Value == "cpu") return torch.CPU;

        if (!torch.cuda.is_available())
            throw new ArgumentException(
                $"device '{text}' asks for CUDA, but no CUDA device is usable here: this build references the CPU libtorch " +
                "unless it was built with -p:TorchBackend=cuda (see README), and the machine needs an NVIDIA driver");
        int index = match.Groups["index"].Success ? int.Parse(match.Groups["index"].Value) : 0;
        if (index >= torch.cuda.device_count())
            throw new ArgumentException($"device '{text}' does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)");
        return torch.device(DeviceType.CUDA, index);
    }

    /// <summary>Sets libtorch's intra-op threads; 0 keeps libtorch's default.</summary>
    public static void SetThreads(int threads)
    {
        if (threads < 0) throw new ArgumentException($"--threads {threads} must be 0 (libtorch default) or positive");
        if (threads > 0) torch.set_num_threads(threads);
    }

    [GeneratedRegex(@"^(?<kind>cpu|cuda)(:(?<index>\d+))?$")]
    private static partial Regex DevicePattern();
}
