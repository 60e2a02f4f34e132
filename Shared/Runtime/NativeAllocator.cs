using System.Runtime.InteropServices;

namespace CondenseCluster.Shared.Runtime;

/// <summary>
/// glibc's malloc serves every large block with a fresh mmap and unmaps it on free, so each large tensor costs page
/// faults on memory the kernel must zero again — on a VM, far more than the arithmetic (a DenseNet concatenates into a new,
/// larger tensor at every layer). The mmap threshold cannot be raised past 32 MiB, so mmap is switched off for
/// allocations and the trim threshold raised: freed tensor memory stays in the heap and is reused. And every thread
/// allocates from the one main arena: glibc gives each thread that allocates its own arena, which grows by mappings
/// of at most 64 MiB and hands them back to the kernel as they empty, so a worker, whose training runs on a thread
/// of its own, faulted its tensors' pages in again every step (1.6x its step time with 2 workers; BENCHMARKS.md).
/// Must run before the first tensor is allocated.
/// </summary>
public static class NativeAllocator
{
    const int TrimThreshold = -1, MmapMax = -4, ArenaMax = -8; // M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX
    const int TrimThresholdBytes = 1 << 30;

    /// <summary>
    /// The same settings as glibc tunables, for a process to start with: a thread that allocated before
    /// <see cref="Configure"/> ran (the .NET runtime's own) may already have an arena, and glibc can hand a later
    /// thread that one instead of the main arena. Set for the workers this program starts (and in the helm chart).
    /// </summary>
    public static string Tunables => $"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={TrimThresholdBytes}:glibc.malloc.arena_max=1";

    /// <summary>Applies the setting and says what is in force, for the run's summary.</summary>
    public static string Configure()
    {
        string? tunables = Environment.GetEnvironmentVariable("GLIBC_TUNABLES");
        if (tunables?.Contains("glibc.malloc.") == true)
            return $"glibc malloc from GLIBC_TUNABLES ({tunables})";
        if (!OperatingSystem.IsLinux()) return "platform allocator (default settings)";
        try
        {
            bool ok = mallopt(MmapMax, 0) == 1 && mallopt(TrimThreshold, TrimThresholdBytes) == 1 && mallopt(ArenaMax, 1) == 1;
            return ok
                ? $"glibc malloc without mmap, trim threshold {TrimThresholdBytes >> 20} MiB, one arena"
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
