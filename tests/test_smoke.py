import d2lrnn


def test_vocabulary_of_the_time_machine():
    train_iter, vocab = d2lrnn.load_data_time_machine(32, 35)
    assert len(vocab) == 28
    assert len(train_iter.corpus) == 10000
