using CondenseCluster.Shared.Data;

namespace CondenseCluster.Tests;

static class BundledData
{
    /// <summary>The committed real subset of Fashion-MNIST, so tests never depend on what the machine has installed.</summary>
    public static string FashionMnistSubset => FashionMnist.BundledDirectory;
}
