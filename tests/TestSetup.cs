using System.Runtime.CompilerServices;
using CondenseCluster.Shared.Runtime;

namespace CondenseCluster.Tests;

static class TestSetup
{
    /// <summary>The test process trains too: prepare it as the real processes do (allocator, libtorch's log), before any tensor exists.</summary>
    [ModuleInitializer]
    internal static void PrepareProcess() => TorchRuntime.PrepareProcess();
}
