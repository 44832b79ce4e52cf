from pujiang.platform.i18n import EN, ZH, negotiate


def test_negotiate_language() -> None:
    assert negotiate(None) == ZH
    assert negotiate("en-US,en;q=0.9") == EN
    assert negotiate("zh-CN,zh;q=0.9,en;q=0.8") == ZH
    assert negotiate("en;q=0.5,zh;q=0.9") == ZH
    assert negotiate("fr-FR") == ZH
    assert negotiate("fr-FR,en;q=0.3") == EN
    assert negotiate("en;q=abc") == ZH
