/** Entry point: mounts the dashboard. */
import { createApp } from 'vue';
import App from './App.vue';
import { forgetLegacyToken } from './api/accessToken';
import './style.css';

forgetLegacyToken();
createApp(App).mount('#app');
