using System.Diagnostics;
using System.Reflection;
using Xunit;

namespace CondenseCluster.Tests.Deployment;

/// <summary>
/// The build settings that keep a build's disk use small (build/HostNativeAssets.targets and the hard links set in
/// Directory.Build.props), checked on this test project's own output folder.
/// </summary>
public class BuildOutputTests
{
    static readonly string Runtimes = Path.Combine(AppContext.BaseDirectory, "runtimes");

    /// <summary>The project builds on linux-x64 only (its libtorch package is linux-x64's).</summary>
    [Fact]
    public void TheOutputHoldsOnlyThisPlatformsNativeLibraries()
    {
        var folders = Directory.GetDirectories(Runtimes).Select(folder => Path.GetFileName(folder)!).Order().ToArray();
        Assert.Equal(["linux-x64", "unix"], folders);
        Assert.True(File.Exists(Path.Combine(Runtimes, "linux-x64", "native", "libtorch_cpu.so")));
    }

    [Fact]
    public void LibTorchIsLinkedFromTheNuGetCacheWhereBothShareAFileSystem()
    {
        string packageRoot = typeof(BuildOutputTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "NuGetPackageRoot").Value!;
        string cached = Directory.GetFiles(Path.Combine(packageRoot, "libtorch-cpu-linux-x64"), "libtorch_cpu.so", SearchOption.AllDirectories).Single();
        string built = Path.Combine(Runtimes, "linux-x64", "native", "libtorch_cpu.so");

        var (cachedDevice, cachedInode) = DeviceAndInode(cached);
        var (builtDevice, builtInode) = DeviceAndInode(built);
        if (cachedDevice == builtDevice)
            Assert.Equal(cachedInode, builtInode);
        else
            Assert.Equal(new FileInfo(cached).Length, new FileInfo(built).Length); // MSBuild falls back to a copy
    }

    static (string Device, string Inode) DeviceAndInode(string path)
    {
        using var stat = Process.Start(new ProcessStartInfo("stat", ["-c", "%d %i", path]) { RedirectStandardOutput = true })!;
        string[] fields = stat.StandardOutput.ReadToEnd().Trim().Split(' ');
        stat.WaitForExit();
        Assert.True(stat.ExitCode == 0, $"stat {path} failed");
        return (fields[0], fields[1]);
    }
}
