using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using TorchSharp;

namespace CondenseCluster.Shared.Runtime;

/// <summary>Device and thread settings shared by every command that runs tensors.</summary>
public static partial class TorchRuntime
{
    /// <summary>
    /// What every program does before any tensor exists: keep freed tensor memory in the heap (<see cref="NativeAllocator"/>)
    /// and libtorch's C++ log to errors. Returns the allocator setting, for the summaries that quote it.
    /// </summary>
    public static string PrepareProcess()
    {
        string allocator = NativeAllocator.Configure();
        QuietNativeLog();
        return allocator;
    }

    /// <summary>
    /// libtorch logs a warning for every convolution whose NNPACK path this CPU lacks ("Unsupported hardware"), which
    /// buries a worker's output; keep its C++ log to errors unless the user set TORCH_CPP_LOG_LEVEL. Must run before
    /// libtorch loads, and through the C library: libtorch reads the process environment, not .NET's copy of it.
    /// </summary>
    static void QuietNativeLog()
    {
        if (!OperatingSystem.IsLinux()) return;
        try { setenv("TORCH_CPP_LOG_LEVEL", "ERROR", overwrite: 0); }
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
