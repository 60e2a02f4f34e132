using System.Runtime.CompilerServices;
using CondenseCluster.Shared.Runtime;

namespace CondenseCluster.Tests;

static class TestSetup
{
    /// <summary>The test process trains too: set the allocator up as the real processes do, before any tensor exists.</summary>
    [ModuleInitializer]
    internal static void ConfigureAllocator() => NativeAllocator.Configure();
}
