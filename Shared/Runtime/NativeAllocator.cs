using System.Runtime.InteropServices;

namespace CondenseCluster.Shared.Runtime;

/// <summary>
/// glibc's malloc serves every large block with a fresh mmap and unmaps it on free, so each large tensor costs page
/// faults on memory the kernel must zero again — on a VM, far more than the arithmetic (a DenseNet concatenates into a new,
/// larger tensor at every layer). The mmap threshold cannot be raised past 32 MiB, so mmap is switched off for
/// allocations and the trim threshold raised: freed tensor memory stays in the heap and is reused. Must run before the
/// first tensor is allocated.
/// </summary>
public static class NativeAllocator
{
    const int TrimThreshold = -1, MmapMax = -4;                // M_TRIM_THRESHOLD, M_MMAP_MAX
    const int TrimThresholdBytes = 1 << 30;

    /// <summary>Applies the setting and says what is in force, for the run's summary.</summary>
    public static string Configure()
    {
        string? tunables = Environment.GetEnvironmentVariable("GLIBC_TUNABLES");
        if (tunables?.Contains("glibc.malloc.") == true)
            return $"glibc malloc from GLIBC_TUNABLES ({tunables})";
        if (!OperatingSystem.IsLinux()) return "platform allocator (default settings)";
        try
        {
            bool ok = mallopt(MmapMax, 0) == 1 && mallopt(TrimThreshold, TrimThresholdBytes) == 1;
            return ok
                ? $"glibc malloc without mmap, trim threshold {TrimThresholdBytes >> 20} MiB"
                : "glibc malloc defaults (mallopt refused the settings)";
        }
        catch (EntryPointNotFoundException)
        {
            return "C library without mallopt (defaults)";
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int parameter, int value);
}
