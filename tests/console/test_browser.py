"""The live console in a real browser (headless Chromium) against a real daphne server.

An agent talks to the same server over a real WebSocket (agentchat_client),
so every update the page shows has gone through the channel layer.
"""

import asyncio
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import SyncToAsync
from channels.layers import channel_layers
from channels.testing import ChannelsLiveServerTestCase
from daphne.testing import DaphneProcess
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, connections

from agentchat_client import AgentChatClient, AgentChatError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("AGENTCHAT_REQUIRE_BROWSER"):
        raise RuntimeError("The browser tests need the Debian packages chromium and chromium-driver.")
    pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 15  # seconds: an upper bound for slow CI machines, not a sleep


class AgentLoop:
    """An asyncio loop in a thread, so a synchronous test can drive an async agent."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro, timeout: float = WAIT):
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class FreshDaphneProcess(DaphneProcess):
    """A forked server that does not inherit this process's async machinery.

    Threads do not survive a fork: the executor that runs ORM calls for async
    code, and channel layers bound to this process's event loops, would be
    dead in the child after earlier async tests ran here.
    """

    def run(self):
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
        channel_layers.backends.clear()
        super().run()


class ConsoleInBrowserTests(ChannelsLiveServerTestCase):
    host = "localhost"
    ProtocolServerProcess = FreshDaphneProcess

    @classmethod
    def setUpClass(cls):
        # The server process is forked: it must not inherit (and share) our
        # open database connections.
        connections.close_all()
        # The server process opens TEST["NAME"] (or "test_" + NAME); point it at
        # the database this run already uses, whatever its name.
        test_settings = settings.DATABASES["default"].setdefault("TEST", {})
        cls.saved_test_name = test_settings.get("NAME")
        test_settings["NAME"] = connection.settings_dict["NAME"]
        super().setUpClass()
        cls.profile = tempfile.mkdtemp(prefix="agentchat-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            f"--user-data-dir={cls.profile}",
        ):
            options.add_argument(flag)
        cls.browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        shutil.rmtree(cls.profile, ignore_errors=True)
        super().tearDownClass()
        settings.DATABASES["default"]["TEST"]["NAME"] = cls.saved_test_name

    def setUp(self):
        User.objects.create_superuser("boss", "boss@example.com", "correct horse")
        self.agents = AgentLoop()
        self.bus = AgentChatClient(f"{self.live_server_ws_url}/ws/agent/", ide="Zed", model="Opus", heartbeats=False)
        self.agents.run(self.bus.connect())

    def tearDown(self):
        self.agents.run(self.bus.close())
        self.agents.stop()

    # --- helpers -------------------------------------------------------------------

    def wait_for(self, condition, timeout: float = WAIT):
        return WebDriverWait(self.browser, timeout, poll_frequency=0.02).until(condition)

    def log_in(self) -> None:
        self.browser.get(f"{self.live_server_url}/admin/login/")
        self.browser.find_element(By.NAME, "username").send_keys("boss")
        self.browser.find_element(By.NAME, "password").send_keys("correct horse")
        self.browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        self.wait_for(EC.presence_of_element_located((By.ID, "dashboard")))

    def open_thread(self, thread_id: str) -> None:
        self.browser.get(f"{self.live_server_url}/admin/threads/thread/{thread_id}/change/")
        self.wait_for(EC.presence_of_element_located((By.CSS_SELECTOR, "#live-status[data-state=live]")))

    def shown_seqs(self) -> list[int]:
        return self.browser.execute_script(
            "return Array.from(document.querySelectorAll('#transcript .msg')).map(e => Number(e.dataset.seq));"
        )

    def presence_classes(self) -> str:
        selector = f'#presence li[data-agent-id="{self.bus.agent_id}"]'
        return self.browser.find_element(By.CSS_SELECTOR, selector).get_attribute("class")

    # --- the test ------------------------------------------------------------------

    def test_the_console_follows_the_thread_live_and_steers_it(self):
        thread_id = self.agents.run(self.bus.join("browser console"))
        self.agents.run(self.bus.post(thread_id, "hello from the agent"))

        self.log_in()
        self.open_thread(thread_id)
        self.assertEqual(self.shown_seqs(), [1])

        # A post over the agent's WebSocket appears without a reload.
        started = time.perf_counter()
        self.agents.run(self.bus.post(thread_id, "second, with <b>markup</b>"))
        self.wait_for(EC.presence_of_element_located((By.ID, "msg-2")))
        print(f"\nagent post -> shown in the console: {(time.perf_counter() - started) * 1000:.0f} ms")
        self.assertIn("<b>markup</b>", self.browser.find_element(By.ID, "msg-2").text)

        # The presence panel shows the agent start waiting...
        waiting = self.agents.submit(self.bus.wait(thread_id, timeout_ms=30_000))
        self.wait_for(lambda _: "waiting" in self.presence_classes())

        # ...a post from the composer wakes it, and it stops waiting.
        self.browser.find_element(By.CSS_SELECTOR, "#composer textarea").send_keys("please review")
        self.browser.find_element(By.ID, "composer-send").click()
        received = waiting.result(WAIT)
        self.assertEqual([(m["seq"], m["content"], m["role"]) for m in received], [(3, "please review", "user")])
        self.wait_for(lambda _: "waiting" not in self.presence_classes())
        self.wait_for(lambda _: self.shown_seqs() == [1, 2, 3])

        # The page's socket drops; posts made meanwhile arrive once each, in order.
        self.browser.execute_script("window.agentchatConsole.live.socket.close();")
        self.wait_for(EC.presence_of_element_located((By.CSS_SELECTOR, "#live-status[data-state=reconnecting]")))
        for text in ("while you were away", "and another"):
            self.agents.run(self.bus.post(thread_id, text))
        self.wait_for(EC.presence_of_element_located((By.CSS_SELECTOR, "#live-status[data-state=live]")))
        self.wait_for(lambda _: len(self.shown_seqs()) >= 5)
        self.agents.run(self.bus.post(thread_id, "after the reconnect"))
        self.wait_for(lambda _: len(self.shown_seqs()) >= 6)
        self.assertEqual(self.shown_seqs(), [1, 2, 3, 4, 5, 6])

        # Close the thread from the page: the bus announces it in the thread (seq 7, shown live),
        # the agent reads the announcement, and its next post is refused.
        self.browser.find_element(By.CSS_SELECTOR, "#close-form textarea").send_keys("done here")
        self.browser.find_element(By.ID, "close-thread").click()
        self.wait_for(EC.text_to_be_present_in_element((By.ID, "thread-status"), "closed"))
        self.wait_for(lambda _: len(self.shown_seqs()) >= 7)
        announced = self.agents.run(self.bus.wait(thread_id, timeout_ms=0))
        self.assertEqual([m["metadata"].get("status") for m in announced], ["closed"])
        with self.assertRaises(AgentChatError) as refused:
            self.agents.run(self.bus.post(thread_id, "one more thing"))
        self.assertEqual(refused.exception.code, "ThreadClosed")
