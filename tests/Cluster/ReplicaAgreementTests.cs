using CondenseCluster.Coordinator.Job;
using Xunit;

namespace CondenseCluster.Tests.Cluster;

public class ReplicaAgreementTests
{
    [Fact]
    public void AllEqualIsAgreement()
    {
        Assert.Empty(ReplicaAgreement.Diverging([("a", "x"), ("b", "x"), ("c", "x")], out string reference));
        Assert.Equal("x", reference);
        Assert.Null(ReplicaAgreement.Describe("weights", 5, [("a", "x"), ("b", "x")]));
    }

    [Fact]
    public void TheMinorityDiverges()
    {
        Assert.Equal(["b"], ReplicaAgreement.Diverging([("a", "x"), ("b", "y"), ("c", "x")], out string reference));
        Assert.Equal("x", reference);
    }

    [Fact]
    public void WithoutAMajorityTheFirstWorkerIsTheReference()
    {
        Assert.Equal(["b"], ReplicaAgreement.Diverging([("a", "x"), ("b", "y")], out _));
        Assert.Equal(["b", "d"], ReplicaAgreement.Diverging([("a", "x"), ("b", "y"), ("c", "x"), ("d", "y")], out _));
        Assert.Equal(["b", "c"], ReplicaAgreement.Diverging([("a", "x"), ("b", "y"), ("c", "z")], out _));
    }
}
