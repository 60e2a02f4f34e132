using CondenseCluster.Coordinator.Cluster;
using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Training;
using Xunit;

namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// --resume-if-present FOLDER, which the helm chart gives a coordinator pod: what a (re)started coordinator does with the
/// run in FOLDER, decided from what lies there.
/// </summary>
public class ResumeIfPresentTests : TempFolderTest
{
    static readonly JobRequest Fresh = new(LocalTrainingTests.Tiny());

    [Fact]
    public void AFolderWhereNoRunStartedStartsItThereAndOneThatStartedIsResumedBeforeItsFirstCheckpoint()
    {
        string run = Path.Combine(Folder, "run");
        Assert.Equal(Fresh with { Output = run }, CoordinatorNode.ResumeIfPresent(Fresh, run));
        Directory.CreateDirectory(Path.Combine(run, "checkpoints"));
        Assert.Equal(Fresh with { Output = run }, CoordinatorNode.ResumeIfPresent(Fresh, run));
        // Its job.json is there: --resume continues with it, from the workers' memory where they hold the job.
        File.WriteAllText(Path.Combine(run, "job.json"), "{}");
        Assert.Equal(Fresh with { Output = run, Resume = run }, CoordinatorNode.ResumeIfPresent(Fresh, run));
    }

    [Fact]
    public void AFolderWithACheckpointIsResumedAndAFinishedRunIsLeftAlone()
    {
        string run = Path.Combine(Folder, "run");
        CheckpointStore.OfRun(run).Save(Fresh.Options!, 6, writer => writer.Write(new byte[] { 1, 2, 3 }));
        Assert.Equal(Fresh with { Output = run, Resume = run }, CoordinatorNode.ResumeIfPresent(Fresh, run));
        Assert.Equal(Fresh with { Output = run, Resume = run }, CoordinatorNode.ResumeIfPresent(Fresh with { Output = run }, run)); // --out the same folder

        File.WriteAllText(Path.Combine(run, "model-trained.ccm"), "the run's end");
        Assert.Null(CoordinatorNode.ResumeIfPresent(Fresh, run));
    }

    [Fact]
    public void ItCannotBeCombinedWithAnotherResumeOrOutputFolder()
    {
        string run = Path.Combine(Folder, "run");
        Assert.Contains("give one of them", Assert.Throws<ArgumentException>(() => CoordinatorNode.ResumeIfPresent(Fresh with { Resume = run }, run)).Message);
        Assert.Contains("a run resumes in its own folder",
            Assert.Throws<ArgumentException>(() => CoordinatorNode.ResumeIfPresent(Fresh with { Output = Path.Combine(Folder, "other") }, run)).Message);
    }
}
