using System.Text.RegularExpressions;
using TorchSharp;

namespace CondenseCluster.Shared.Runtime;

/// <summary>Device and thread settings shared by every command that runs tensors.</summary>
public static partial class TorchRuntime
{
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
