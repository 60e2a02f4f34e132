using CondenseCluster.Shared.Storage;
using Xunit;

namespace CondenseCluster.Tests.Storage;

public class RunIdentityTests : TempFolderTest
{
    [Fact]
    public void AResumedRunKeepsItsIdentityAndANewRunInTheSameFolderGetsAnother()
    {
        string first = RunIdentity.Of(Folder, resuming: false);
        Assert.Equal(first, RunIdentity.Of(Folder, resuming: true));
        Assert.Equal(first, RunIdentity.Of(Folder, resuming: true));
        string second = RunIdentity.Of(Folder, resuming: false);
        Assert.NotEqual(first, second);
        Assert.Equal(second, RunIdentity.Of(Folder, resuming: true));
    }

    [Theory]
    [InlineData(null)]          // a run folder from before run identities
    [InlineData("not an id\n")] // damaged
    public void AResumedRunWithoutAReadableIdentityGetsANewOneAndKeepsIt(string? content)
    {
        string path = Path.Combine(Folder, RunIdentity.FileName);
        if (content is not null) File.WriteAllText(path, content);
        string given = RunIdentity.Of(Folder, resuming: true);
        Assert.Matches("^[0-9a-f]{32}$", given);
        Assert.Equal(given, RunIdentity.Of(Folder, resuming: true));
        Assert.Single(Directory.GetFiles(Folder)); // no temporary file left beside it
    }
}
