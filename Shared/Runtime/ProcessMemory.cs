namespace CondenseCluster.Shared.Runtime;

/// <summary>This process's resident memory as the kernel counts it (Linux), native allocations included.</summary>
public static class ProcessMemory
{
    /// <summary>VmRSS (resident now) and VmHWM (the most ever resident) from /proc/self/status, in bytes.</summary>
    public static (long Resident, long PeakResident) Read()
    {
        long resident = -1, peak = -1;
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) resident = Kilobytes(line) * 1024;
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kilobytes(line) * 1024;
        }
        if (resident < 0 || peak < 0) throw new InvalidOperationException("/proc/self/status has no VmRSS or VmHWM line");
        return (resident, peak);
    }

    // "VmRSS:     123456 kB"
    static long Kilobytes(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
}
