using System.Runtime.InteropServices;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests;

/// <summary>libtorch's C++ log stays at errors in a process prepared like every program (TorchRuntime.PrepareProcess).</summary>
public class NativeLogTests
{
    /// <summary>
    /// c10's FLAGS_caffe2_log_level is what every libtorch warning is checked against before it is printed (NNPACK's
    /// "Could not initialize NNPACK! Reason: Unsupported hardware." on CPUs without AVX2, TORCH_WARN's deprecation
    /// notes): read after TorchSharp has loaded libtorch and run a convolution, it must be ERROR (2), not libtorch's
    /// default WARNING (1) that TorchSharp processes ran with while only the environment variable was set.
    /// </summary>
    [Fact]
    public void LibtorchLogsOnlyErrors()
    {
        if (Environment.GetEnvironmentVariable("TORCH_CPP_LOG_LEVEL") is not null) return; // the user's level wins
        using var output = nn.functional.conv2d(randn(16, 2, 8, 8), randn(2, 2, 3, 3));
        var c10 = NativeLibrary.Load("c10", typeof(TorchSharp.torch).Assembly, null);
        int level = Marshal.ReadInt32(NativeLibrary.GetExport(c10, "FLAGS_caffe2_log_level"));
        Assert.Equal(2, level);
    }
}
