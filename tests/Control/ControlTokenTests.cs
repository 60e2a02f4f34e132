using CondenseCluster.Coordinator.Control;
using Xunit;

namespace CondenseCluster.Tests.Control;

public class ControlTokenTests : TempFolderTest
{
    [Fact]
    public void ATokenFileIsReadTrimmedAndOnlyTheExactTokenIsAccepted()
    {
        string file = Path.Combine(Folder, "token");
        var said = new List<string>();
        // A file named explicitly must exist; only the default one is generated.
        Assert.Contains("does not exist", Assert.Throws<ArgumentException>(() => ControlToken.Resolve(file, said.Add)).Message);
        File.WriteAllText(file, "  the-token \n");
        var token = ControlToken.Resolve(file, said.Add);
        Assert.True(token.Accepts("Bearer the-token"));
        Assert.True(token.Accepts("bearer the-token"));
        Assert.False(token.Accepts("Bearer the-token2"));
        Assert.False(token.Accepts("the-token"));
        Assert.False(token.Accepts(null));
        Assert.Contains($"control token from {file}", said);
        File.WriteAllText(file, "\n");
        Assert.Contains("is empty", Assert.Throws<ArgumentException>(() => ControlToken.Resolve(file, said.Add)).Message);
    }

    [Fact]
    public void RefusalsSayWhatIsMissing()
    {
        Assert.Contains("no bearer token", ControlToken.Refusal(null));
        Assert.Contains("wrong", ControlToken.Refusal("Bearer x"));
    }
}
